"""One input of ``declip prepare`` (a video file, a folder of frames, or an image): what the inputs
module finds and a worker processes. A module of its own so that worker processes import it without
the data package (torch)."""
import dataclasses
import os

LABEL_WORDS = ("real", "fake")


@dataclasses.dataclass(frozen=True)
class Item:
    """One input: ``kind`` video | frames | image; ``path`` a file or, for frames, a tuple of files;
    ``rel`` its path under its label folder ('/' separated, for names and messages)."""

    kind: str
    path: object
    label: int
    rel: str
    name: str = ""
    mask: object = None
    split: str = ""

    @property
    def shown(self):
        return f"{LABEL_WORDS[self.label]}/{self.rel}"

    @property
    def stem(self):
        return os.path.splitext(self.rel.rsplit("/", 1)[-1])[0] if self.kind != "frames" else self.rel.rsplit("/", 1)[-1]


__all__ = ["Item", "LABEL_WORDS"]
