"""The worker side of ``declip prepare``: one process per worker, one face model each.

Kept apart from run.py so that a worker process (started by *spawn*: a fork of a parent that has run
OpenCV or torch threads can hang in them) imports only what it needs: writer.py, the media package,
OpenCV and dlib, not torch.
"""
import logging
import signal

from ..media.video import quiet_decoder_logs
from .writer import process_item

_STATE = {}


def aligner_for(settings):
    """The FaceAligner of ``settings`` (None for whole frames)."""
    if settings.faces == "none":
        return None
    from ..media.faces import FaceAligner

    return FaceAligner(settings.size, settings.margin, settings.model)


def setup(tree, settings, worker=True, log_level=None):
    """Prepare this process to run jobs. A worker leaves Ctrl-C to the main process, dies at SIGTERM
    (how a pool stops its workers), runs one OpenCV thread (the workers are the parallelism) and logs
    at ``log_level`` as the main process does (a spawned process starts without a logging setup)."""
    import cv2

    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        cv2.setNumThreads(1)
        if log_level is not None:
            logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if (log_level if log_level is not None else logging.getLogger().getEffectiveLevel()) > logging.DEBUG:
        quiet_decoder_logs()
    _STATE.update(tree=tree, settings=settings, aligner=aligner_for(settings))


def job(item):
    return item, process_item(_STATE["tree"], item, _STATE["settings"], _STATE["aligner"])


__all__ = ["aligner_for", "job", "setup"]
