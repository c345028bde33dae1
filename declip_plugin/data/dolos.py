"""``dolos`` adapter: the Dolos inpainting dataset (and the demo data, which copies its layout).

Layout (``root`` relative to the data root unless absolute)::

    <root>/<source>/fake/<generator>/images/<split>/x.png   manipulated images
    <root>/<source>/fake/<generator>/masks/<split>/x.png    their masks, INVERTED (white = untouched)
    <root>/<source>/real/<split>/y.png                      real images (include_real)

``<split>`` is ``train``, ``valid`` (``val`` also accepted) or ``test``. A mask has the image's
file stem (any image extension, .png preferred). Real images are also looked for under
``<root>/<source>/real/<generator>/<split>/`` when the first directory does not exist.

Spec keys: ``root``, ``source`` (default celebahq), ``generator`` (lama, ldm, pluralistic,
repaint-p2-9k, ...), ``mask_polarity`` (default inverted, as the Dolos release).
"""
import os

from .base import ManipulationDataset, MaskFinder, split_dir


class DolosAdapter(ManipulationDataset):
    adapter = "dolos"
    default_polarity = "inverted"

    def collect(self):
        source_dir = os.path.join(self.resolve(self.require("root")), str(self.spec.get("source", "celebahq")))
        fake_dir = os.path.join(source_dir, "fake", str(self.require("generator")))
        images_dir = split_dir(os.path.join(fake_dir, "images"), self.split)
        finder = MaskFinder(split_dir(os.path.join(fake_dir, "masks"), self.split), "same_stem")
        samples = self.manipulated_samples(self.list_manipulated(images_dir), finder)
        if self.include_real:
            real_dir = split_dir(os.path.join(source_dir, "real"), self.split)
            if not os.path.isdir(real_dir):
                per_generator = split_dir(os.path.join(source_dir, "real", str(self.spec["generator"])), self.split)
                real_dir = per_generator if os.path.isdir(per_generator) else real_dir
            samples += self.real_samples(real_dir)
        return samples
