"""``declip prepare SRC OUT --name NAME``: your own videos and images as a DeepfakeBench dataset.

What DeepfakeBench's preprocessing/preprocess.py and rearrange.py do, in one command:

* :mod:`.inputs`   SRC (folders real/ fake/, ``--label``, or a CSV), masks, names, splits per source video
* :mod:`.writer`   one input: decode, sample, face crop (declip_plugin/media), frames / masks /
                   landmarks, and the done marker that makes the run resumable
* :mod:`.dataset`  the dataset JSON, the LMDB, the summary, the dataset config
* :mod:`.run`      checks before side effects, worker processes, progress, resume
* :mod:`.worker`   the worker processes' side (light imports: no torch)

The user's view: docs/prepare.md.
"""
from .writer import Settings

__all__ = ["Options", "Settings", "prepare_dataset"]


def __getattr__(name):  # run.py (torch, through the data package) is imported on use, not by a worker
    if name in ("Options", "prepare_dataset"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
