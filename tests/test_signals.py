"""engine/signals.py: SIGTERM ends a command like Ctrl-C, and neither cuts the other's clean-up short."""
import os
import signal
import time

import pytest

from declip_plugin.engine.signals import Terminated, sigterm_as_interrupt


def _wait_for_signal():
    deadline = time.time() + 5
    while time.time() < deadline:  # the handler runs between two bytecodes of this loop
        time.sleep(0.01)
    pytest.fail("no signal arrived")


def test_a_sigterm_after_ctrl_c_does_not_cut_the_clean_up_short():
    """Ctrl-C at a terminal, then the SIGTERM a job controller sends its job for the same Ctrl-C: the run's
    clean-up (removing a run folder, logging where its last epoch is) runs to its end."""
    cleaned = []
    with pytest.raises(KeyboardInterrupt) as exc:
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                _wait_for_signal()
            finally:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                cleaned.append("done")
    assert not isinstance(exc.value, Terminated)
    assert cleaned == ["done"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # both handlers were the block's only
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_raises_terminated_and_a_second_one_is_ignored_during_the_clean_up():
    cleaned = []
    with pytest.raises(Terminated):
        with sigterm_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                _wait_for_signal()
            finally:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                cleaned.append("done")
    assert cleaned == ["done"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.parametrize("signum,exc", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_while_a_fork_runs_its_hooks_ends_the_run_at_the_next_batch(signum, exc):
    """Inside os.fork's hooks (a DataLoader starting its workers) an exception would be dropped by Python
    and the run would go on with its workers gone: the signal is raised by the next batch's check."""
    from declip_plugin.engine import signals

    reached = []
    with pytest.raises(exc):
        with sigterm_as_interrupt():
            signals._forking.append(1)  # as os.fork's before-hook sets it
            try:
                os.kill(os.getpid(), signum)
                time.sleep(0.05)  # the handler runs here and raises nothing
            finally:
                signals._forking.clear()
            reached.append("after the fork")
            signals.check()  # the next batch (engine.evaluator.to_device)
            reached.append("a batch after the signal")
    assert reached == ["after the fork"]
