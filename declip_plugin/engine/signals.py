"""SIGTERM handled like Ctrl-C: what schedulers (SLURM preemption, time limits), ``kill`` and
container runtimes send ends a run through the same clean-up as a KeyboardInterrupt.

Without a handler SIGTERM ends the process at once: no ``finally`` runs, so a run directory
created for a run that never finished an epoch stays behind, empty of checkpoints. Inside
:func:`sigterm_as_interrupt` SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) in the main
thread instead: a run without a finished epoch is removed, one with ``ckpt_last.pth`` keeps it
for ``--resume`` (engine/run.py), and every atomic write in flight leaves the previous file.
Further SIGTERMs are ignored while that clean-up runs, and so after Ctrl-C (a local job's controller
stops its job with SIGTERM after the Ctrl-C that reached both). A signal that lands while ``os.fork``
runs its hooks (a DataLoader starting its workers), where Python would drop the exception, is raised
at the next batch instead (:func:`check`).

A SIGTERM handler someone else installed (a job launcher's) is left in place. DataLoader workers
ignore SIGTERM (:func:`worker_ignores_sigterm`): SLURM signals every process of a job, and a worker
killed first would end the run with DataLoader's "worker killed" traceback instead. Since SIGTERM is
also how DataLoader and multiprocessing stop workers that did not stop by themselves, the main
process stops them otherwise: a loop that ends early (an error, Ctrl-C, SIGTERM) shuts its loader's
workers down at once (engine/loaders.py ``Batches``), and at exit every worker still there is killed
(:func:`_kill_workers_at_exit`), so no way of ending waits for a worker that ignores SIGTERM.
"""
import atexit
import contextlib
import logging
import multiprocessing.util  # its exit hook is registered first, so it runs after ours (atexit is LIFO)
import os
import signal
import sys
import threading

logger = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """SIGTERM received; handled wherever a KeyboardInterrupt is."""

    def __init__(self, signum=signal.SIGTERM):
        super().__init__(f"terminated by {signal.Signals(signum).name}")
        self.signum = signum


_received = []  # the signal received inside the block (its exception may be swallowed: see check())


_forking = []  # set while os.fork runs its hooks, where an exception would only be printed and dropped


def _interruption(signum):
    """The exception a signal received inside the block ends the command with."""
    return Terminated(signum) if signum == signal.SIGTERM else KeyboardInterrupt()


def _stopping(signum):
    """What both handlers do first: a SIGTERM that follows no longer cuts the clean-up short (SLURM signals
    again; a job controller stops its job after the same Ctrl-C), workers ended by the same signal are
    expected (torch's SIGCHLD handler would raise "DataLoader worker ... is killed" in the middle of the
    clean-up), and what the signal tore down half-built is quiet. The signal is recorded for :func:`check`."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sys.unraisablehook = _quiet_unraisable
    _received.append(signum)


def _raise_terminated(signum, frame):
    _stopping(signum)
    logger.warning("received %s: stopping the run", signal.Signals(signum).name)
    if not _forking:
        raise Terminated(signum)


def _raise_interrupt(signum, frame):
    """Ctrl-C inside the block: a KeyboardInterrupt, as Python's own handler raises (a second Ctrl-C
    raises again), with :func:`_stopping`'s care."""
    _stopping(signum)
    if not _forking:
        raise KeyboardInterrupt


def _quiet_unraisable(unraisable):
    """After Ctrl-C or a SIGTERM, objects torn down half-built (a DataLoader iterator the signal
    interrupted in its constructor) raise in ``__del__``: expected, so logged at debug level instead of
    printed as a traceback."""
    logger.debug("after an interrupt, ignored in %r: %r", unraisable.object, unraisable.exc_value)


def check():
    """Raise the interruption again when SIGTERM or Ctrl-C was received: an exception raised by a handler
    at an unlucky moment (inside a fork hook or a ``__del__``) is dropped by Python (a handler inside a
    fork hook does not raise at all), and further SIGTERMs are then ignored; the batch loops call this
    so the run still ends."""
    if _received:
        raise _interruption(_received[0])


def _ignore_in_forked_child():
    """A process forked from inside the block (a DataLoader worker) must not run the handler: the
    main process handles SIGTERM and stops its workers."""
    if signal.getsignal(signal.SIGTERM) is _raise_terminated:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if signal.getsignal(signal.SIGINT) is _raise_interrupt:  # Ctrl-C there: Python's own KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _after_fork_in_child():
    _forking.clear()
    _ignore_in_forked_child()


os.register_at_fork(before=lambda: _forking.append(1), after_in_parent=_forking.clear,
                    after_in_child=_after_fork_in_child)


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
    _received.clear()
    signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:  # Python's own (not ignored, not a launcher's)
        signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C (or the SIGTERM above): what it cut short is torn down quietly
        sys.unraisablehook = _quiet_unraisable
        raise
    except Exception as exc:  # e.g. DataLoader's "worker killed" noticed first: the cause is the signal
        if _received:
            raise _interruption(_received[0]) from exc
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        _received.clear()


@atexit.register  # runs before multiprocessing's own exit hook (registered earlier, so called later)
def _kill_workers_at_exit():
    """Multiprocessing's exit hook stops daemonic children (DataLoader workers) with SIGTERM and then
    joins them: workers that ignore SIGTERM would keep the process from ever exiting. Whatever ended
    the process (success, an error re-raised from a worker, Ctrl-C, SIGTERM), workers still alive
    here have nothing left to do: they are killed. Torch's SIGCHLD handler (a DataLoader's) goes first:
    it would raise "DataLoader worker ... is killed" inside the join, printing a traceback and leaving
    the other workers alive for multiprocessing's hook to wait for forever."""
    if hasattr(signal, "SIGCHLD") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()
            child.join(5)


def worker_ignores_sigterm(worker_id):
    """``worker_init_fn`` of the DataLoaders: SIGTERM is the main process's to handle."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def handles_sigterm(fn):
    """``fn`` runs inside :func:`sigterm_as_interrupt`."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with sigterm_as_interrupt():
            return fn(*args, **kwargs)

    return wrapper


__all__ = ["Terminated", "check", "handles_sigterm", "sigterm_as_interrupt", "worker_ignores_sigterm"]
