"""Image and mask files: reading, integrity checks and decoding (the adapters rely on these checks).

Every function raises :class:`~declip_plugin.errors.DataError` naming the file and what is wrong,
never returns a placeholder.

Images
    Read as bytes (``np.fromfile``, so non-ASCII paths work), checked for truncation with Pillow's
    header reader (PNG: every chunk up to ``IEND`` present and CRC-checked; JPEG: the entropy-coded
    data after the first start-of-scan marker must reach an end-of-image marker), then decoded with ``cv2.imdecode``
    and converted BGR -> RGB. OpenCV decodes a cut JPEG without complaint (it only prints a
    warning), hence the explicit byte checks.

Masks
    Read as 8-bit grayscale, then :func:`binarize_mask`:

    * A mask is accepted when at least 99% of its pixels are near black or near white
      (value <= 10 or >= 245; the slack absorbs JPEG and resize noise). Otherwise it is
      rejected: masks must be binary black/white images.
    * A mask whose only values are 0 and 1 (a label map) is first scaled by 255.
    * Polarity: ``'normal'`` means white = manipulated; ``'inverted'`` (Dolos) means
      white = untouched, so the values are flipped (``255 - v``) first.
    * After polarity, pixels >= 128 are 1 (manipulated), the rest 0.
"""
import io
import logging
import os
import struct

import cv2
import numpy as np
from PIL import Image

from ..errors import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MASK_POLARITIES = ("normal", "inverted")

#: binary-mask rule (see the module docstring)
NEAR_BLACK = 10
NEAR_WHITE = 245
MIN_BINARY_FRACTION = 0.99
THRESHOLD = 128

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_image_file(name):
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def read_bytes(path, what="image"):
    """The file's bytes as a uint8 array; DataError when it is missing, unreadable or empty."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{what} {path} does not exist") from None
    except OSError as e:  # permissions, a directory, I/O error
        raise DataError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if data.size == 0:
        raise DataError(f"{what} {path} is empty (0 bytes)")
    return data


def check_complete(data, path, what="image"):
    """Raise DataError if a PNG/JPEG byte buffer is truncated or corrupt; return (w, h) from its header.

    Pillow reads the header. PNG: Pillow's ``verify()`` walks every chunk (CRC-checked) up to ``IEND``.
    JPEG: the entropy-coded data after the first start of scan (where Pillow stops reading the
    header) must reach an end-of-image marker. Returns None for other formats (they are only checked
    by decoding).
    """
    buf = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    kind = "PNG" if buf.startswith(_PNG_SIGNATURE) else "JPEG" if buf.startswith(b"\xff\xd8") else None
    if kind is None:
        return None
    try:
        with Image.open(io.BytesIO(buf), formats=[kind]) as im:
            size = im.size
            scan_start = im.fp.tell()
            if kind == "PNG":
                im.verify()
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        raise DataError(f"{what} {path} is truncated or corrupt (a {kind} file Pillow cannot read: {exc})") from None
    if kind == "JPEG" and buf.find(b"\xff\xd9", scan_start) < 0:
        raise DataError(f"{what} {path} is truncated (JPEG without its end-of-image marker)")
    return size


def _decode(data, flags, path, what):
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise DataError(f"{what} {path} cannot be decoded (not an image, or a corrupt file)")
    return img


def read_image(path):
    """Decode an image file to an RGB uint8 array of shape (H, W, 3)."""
    return decode_image(read_bytes(path, "image"), path)


def decode_image(data, path):
    """Encoded image bytes (uint8 array) -> RGB uint8 (H, W, 3); ``path`` names them in errors."""
    check_complete(data, path, "image")
    img = _decode(data, cv2.IMREAD_COLOR, path, "image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def probe_image(path):
    """Cheap integrity check of an image: (w, h) without a full-resolution decode when possible.

    Checks existence, truncation, and that the data decodes (at 1/8 scale: libjpeg decodes
    JPEGs at reduced size much faster).
    """
    return probe_bytes(read_bytes(path, "image"), path)


def probe_bytes(data, path):
    """:func:`probe_image` of encoded image bytes."""
    size = check_complete(data, path, "image")
    if size is None:
        img = _decode(data, cv2.IMREAD_COLOR, path, "image")
        return img.shape[1], img.shape[0]
    _decode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8, path, "image")
    return size


def binarize_mask(gray, path="<mask>", polarity="normal"):
    """A uint8 (H, W) grayscale mask -> uint8 {0, 1}, 1 = manipulated.

    Rule: a mask whose only values are 0 and 1 is scaled by 255 first. At least 99% of the
    pixels must be near black or near white (<= 10 or >= 245, tolerating JPEG/resize noise),
    else DataError ("masks must be binary black/white images"). Polarity ``inverted`` flips the
    values (255 - v); then pixels >= 128 are 1.
    """
    if polarity not in MASK_POLARITIES:
        raise DataError(f"mask_polarity must be one of {MASK_POLARITIES}, got {polarity!r}")
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise DataError(f"mask {path} must be a single-channel image, got shape {gray.shape}")
    if gray.dtype != np.uint8:
        raise DataError(f"mask {path} must be an 8-bit image, got {gray.dtype}")
    if gray.max() == 1:  # a 0/1 label map
        gray = gray * np.uint8(255)
    near = np.count_nonzero((gray <= NEAR_BLACK) | (gray >= NEAR_WHITE))
    frac = near / gray.size
    if frac < MIN_BINARY_FRACTION:
        raise DataError(
            f"mask {path} is not binary: only {100 * frac:.1f}% of its pixels are black or white "
            f"(need {100 * MIN_BINARY_FRACTION:.0f}%); masks must be binary black/white images"
        )
    if polarity == "inverted":
        return (gray < THRESHOLD).astype(np.uint8)
    return (gray >= THRESHOLD).astype(np.uint8)


def read_mask(path, polarity="normal"):
    """Decode a mask file to a uint8 (H, W) array in {0, 1}, 1 = manipulated."""
    return decode_mask(read_bytes(path, "mask"), path, polarity)


def decode_mask(data, path, polarity="normal"):
    """Encoded mask bytes -> uint8 (H, W) in {0, 1} (see :func:`read_mask`)."""
    check_complete(data, path, "mask")
    gray = _decode(data, cv2.IMREAD_GRAYSCALE, path, "mask")
    return binarize_mask(gray, path, polarity)


def check_mask_fits(mask_wh, image_wh, mask_path, image_path, tolerance=0.01):
    """DataError when the mask's aspect ratio differs from the image's by more than ``tolerance``.

    Masks at another resolution but the same aspect ratio are fine (they are resized).
    """
    mw, mh = mask_wh
    iw, ih = image_wh
    image_ratio = iw / ih
    if abs(mw / mh - image_ratio) > tolerance * image_ratio:
        raise DataError(
            f"mask {mask_path}: mask {mw}x{mh} does not match image {iw}x{ih} ({image_path})"
        )


def find_with_stem(directory_listing, directory, stem, prefer=(".png",)):
    """The file in ``directory`` named ``stem`` + an image extension (``prefer`` first), or None.

    ``directory_listing`` maps stems to the file names in the directory
    (see :func:`list_images_by_stem`).
    """
    names = directory_listing.get(stem)
    if not names:
        return None
    if len(names) > 1:
        for ext in prefer:
            for n in names:
                if n.lower().endswith(ext):
                    return os.path.join(directory, n)
    return os.path.join(directory, sorted(names)[0])


def list_images_by_stem(directory):
    """``{stem: [file names]}`` of the image files directly in ``directory`` (empty if missing)."""
    out = {}
    try:
        entries = os.listdir(directory)
    except OSError:
        return out
    for n in entries:
        if is_image_file(n):
            out.setdefault(os.path.splitext(n)[0], []).append(n)
    return out
