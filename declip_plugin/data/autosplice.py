"""``autosplice`` adapter: the AutoSplice text-prompt splicing dataset.

Layout (``root`` relative to the data root unless absolute)::

    <root>/Forged_JPEG{75,90,100}/name_x.jpg    manipulated images at three JPEG qualities
    <root>/Mask/name_mask.png                    masks, white = manipulated (normal polarity)
    <root>/Authentic/*.jpg                       real images (include_real)

The mask of ``name_x.jpg`` is ``name_mask.png``: the image stem up to its last ``_`` plus
``_mask``.

AutoSplice has no official split. ``split: hash`` (the default) assigns each image by the md5 of
its mask stem (``name``) to train/val/test with ``split_ratios`` (default 0.8/0.1/0.1): stable
across machines, and the three JPEG versions of one image always land in the same split.
``split: all`` gives every split the whole set (evaluation only, as in the DeCLIP paper).

Spec keys: ``root``, ``quality`` (75, 90 or 100; or ``images`` to name the directory),
``masks`` (default Mask), ``real`` (default Authentic), ``split``, ``split_ratios``,
``mask_polarity`` (default normal).
"""
import os

from ..errors import ConfigError
from .base import ManipulationDataset, MaskFinder, file_stem

QUALITIES = (75, 90, 100)


class AutoSpliceAdapter(ManipulationDataset):
    adapter = "autosplice"
    default_polarity = "normal"

    def _images_dirname(self):
        if self.spec.get("images"):
            return str(self.spec["images"])
        q = self.require("quality")
        if str(q) not in {str(v) for v in QUALITIES}:
            raise ConfigError(f"dataset {self.name}: quality must be one of 75, 90, 100; got {q!r}")
        return f"Forged_JPEG{q}"

    def collect(self):
        root = self.resolve(self.require("root"))
        finder = MaskFinder(os.path.join(root, str(self.spec.get("masks", "Mask"))), "strip_last_underscore", "_mask")

        def group_key(path):  # name_x.jpg -> name: every JPEG version of an image in one split
            stem = file_stem(path)
            cut = stem.rfind("_")
            return stem[:cut] if cut > 0 else stem

        keep = self.split_filter(group_key, default="hash")
        images = self.list_manipulated(os.path.join(root, self._images_dirname()), keep=keep)
        samples = self.manipulated_samples(images, finder)
        if self.include_real:
            real_dir = os.path.join(root, str(self.spec.get("real", "Authentic")))
            samples += self.real_samples(real_dir, keep=self.split_filter(file_stem, default="hash"))
        return samples
