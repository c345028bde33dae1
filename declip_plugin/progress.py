"""Progress output: a tqdm bar on a terminal, one log line per loop otherwise, nothing with ``--quiet``.

tqdm redraws its bar with carriage returns; written to a file (CI logs, ``> log``, nohup) every refresh
stays there as a fragment. So a bar is drawn only when stderr is a terminal; elsewhere each loop (an
epoch, a test set) ends with one line: batches, images, seconds, images/s, and for training the ETA of
the run (``eta_line``). ``set_quiet(True)`` (the CLI's ``--quiet``) turns both off on the console;
the lines, marked with ``extra=PROGRESS``, still reach a run's log file (training.log).
"""
import logging
import sys
import time

logger = logging.getLogger(__name__)

_QUIET = {"on": False}
PROGRESS = {"progress": True}  # ``extra`` of a progress log line


class _NoProgress(logging.Filter):
    def filter(self, record):
        return not getattr(record, "progress", False)


_FILTER = _NoProgress()


def set_quiet(on=True):
    """No bars, and no progress lines on the console handlers of the root logger (files keep them)."""
    _QUIET["on"] = bool(on)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            (handler.addFilter if on else handler.removeFilter)(_FILTER)


def quiet():
    return _QUIET["on"]


def on_terminal(stream=None):
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _Lines:
    """The non-terminal stand-in for a tqdm bar: iterates, counts, logs one line at the end."""

    def __init__(self, iterable, desc, log):
        self.iterable, self.desc, self.log = iterable, desc, log
        self.batches, self.images, self.postfix = 0, 0, {}
        self.t0 = None

    def set_postfix(self, **kwargs):
        self.postfix = kwargs

    def update_images(self, n):
        self.images += int(n)

    def __iter__(self):
        self.t0 = time.perf_counter()
        for item in self.iterable:
            self.batches += 1
            yield item
        if self.log:
            s = time.perf_counter() - self.t0
            rate = self.images / s if s > 0 and self.images else 0.0
            extra = "".join(f", {k} {v}" for k, v in self.postfix.items() if k != "img_s")
            logger.info("%s: %d batches, %d images in %.1f s (%.1f img/s%s)", self.desc, self.batches, self.images,
                        s, rate, extra, extra=PROGRESS)

    def close(self):
        pass


def progress(iterable, desc, enabled=True, unit="batch", summary=True):
    """A tqdm bar over ``iterable`` on a terminal; else a :class:`_Lines` that logs one summary line
    (``summary=False``: none, when the caller logs its own line, as the trainer's epoch line).

    Callers report images with ``bar.update_images(n)`` when they have it (a no-op on a tqdm bar,
    whose postfix shows img/s)."""
    if not enabled:
        return _Lines(iterable, desc, log=False)
    if on_terminal() and not quiet():
        from tqdm import tqdm

        bar = tqdm(iterable, desc=desc, unit=unit, leave=False)
        bar.update_images = lambda n: None
        return bar
    return _Lines(iterable, desc, log=summary)


def eta_line(done, total, seconds_so_far):
    """``"ETA 1m05s"`` for the rest of a loop of ``total`` steps after ``done`` took ``seconds_so_far``."""
    if done <= 0 or total <= done:
        return "ETA 0s"
    left = seconds_so_far / done * (total - done)
    m, s = divmod(int(round(left)), 60)
    return f"ETA {m}m{s:02d}s" if m else f"ETA {s}s"
