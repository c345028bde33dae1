"""SIGTERM handled like Ctrl-C: what schedulers (SLURM preemption, time limits), ``kill`` and
container runtimes send ends a run through the same clean-up as a KeyboardInterrupt.

Without a handler SIGTERM ends the process at once: no ``finally`` runs, so a run directory
created for a run that never finished an epoch stays behind, empty of checkpoints. Inside
:func:`sigterm_as_interrupt` SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main
thread instead: a run without a finished epoch is removed, one with ``ckpt_last.pth`` keeps it
for ``--resume`` (engine/run.py), and every atomic write in flight leaves the previous file.
Further SIGTERMs are ignored while that clean-up runs.

A SIGTERM handler someone else installed (a job launcher's) is left in place.
"""
import contextlib
import logging
import signal
import threading

logger = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """SIGTERM received; handled wherever a KeyboardInterrupt is."""

    def __init__(self, signum=signal.SIGTERM):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


def _raise_terminated(signum, frame):
    signal.signal(signum, signal.SIG_IGN)  # the clean-up that follows is not cut short by a second one
    logger.warning("received %s: stopping the run", signal.Signals(signum).name)
    raise Terminated(signum)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises :class:`Terminated`; the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:  # nested, or a launcher's own handler: keep it
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def handles_sigterm(fn):
    """``fn`` runs inside :func:`sigterm_as_interrupt`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with sigterm_as_interrupt():
            return fn(*args, **kwargs)

    return wrapper


__all__ = ["Terminated", "handles_sigterm", "sigterm_as_interrupt"]
