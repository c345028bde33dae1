"""DeepfakeBench's face crop (``extract_aligned_face_dlib`` of its preprocessing/preprocess.py), on dlib.

For one RGB frame, :meth:`FaceAligner.align`:

1. detects faces with dlib's frontal face detector on the RGB frame, upsampling once, and keeps the
   biggest box (width x height);
2. predicts the landmarks in that box and takes five key points, the landmarks 37, 44, 30, 49 and 55
   (eyes, nose, mouth; the same indices in dlib's 68-point model and DeepfakeBench's 81-point one);
3. estimates the similarity transform (rotation, uniform scale, translation; Umeyama's least squares,
   as scikit-image's ``SimilarityTransform.estimate``) from them onto the 112-px ArcFace template
   (x + 8), scaled to the output size and shrunk by the margin (``scale = 1.3``: 30 % more context);
4. warps the frame with it (bilinear, black outside) to ``size`` x ``size`` (256), and the mask, when
   one is given, with the same matrix. The warp is ``cv2.warpAffine``'s of OpenCV 4.x, the version
   DeepfakeBench runs (its requirements pin opencv-python < 4.11): its fixed-point source coordinates
   (1/32 pixel) computed here and applied with ``cv2.remap``, because OpenCV 4.11 and later compute
   warpAffine otherwise (up to 3 grey levels apart on 12 % of a face crop's pixels, measured);
5. detects the face again on the crop, as DeepfakeBench does on its BGR copy of it (upsampling once,
   its first box), and predicts the 68 landmarks there: what DeepfakeBench saves as
   ``landmarks/<video>/<frame>.npy`` (int64, (68, 2), crop coordinates). No face on the crop: no
   result, as DeepfakeBench then drops the frame.

The landmark model is dlib's 68-point ``shape_predictor_68_face_landmarks.dat`` from the
``face_recognition_models`` package (pip; the ``[faces]`` extra of this package installs it with
``dlib-bin``). DeepfakeBench loads an 81-point model it does not distribute; its five key points are
the same landmarks of the 68 it extends.
"""
import dataclasses
import importlib.util
import logging
import os
from typing import Optional

import cv2
import numpy as np

from ..errors import DeclipError

logger = logging.getLogger(__name__)

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
MODEL_PACKAGE = "face_recognition_models"
KEYPOINTS = (37, 44, 30, 49, 55)
#: the ArcFace template of 112 x 112 faces (the five key points)
ARCFACE_112 = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366], [33.5493, 92.3655],
                        [62.7299, 92.2041]], dtype=np.float32)
FACE_MODES = ("dlib", "none")  # dlib: DeepfakeBench's aligned face crop; none: whole frames
DEFAULT_SIZE = 256
DEFAULT_MARGIN = 1.3
UPSAMPLE = 1
FACES_EXTRA = ("face crops need dlib and dlib's landmark model: pip install -e '.[faces]' (dlib-bin, "
               "face_recognition_models; scripts/setup_env.sh installs it), or --faces none for whole frames")


def landmark_model_path(path=None):
    """The landmark model file: ``path``, else the 68-point model of the face_recognition_models package."""
    if path:
        path = os.path.abspath(os.path.expanduser(str(path)))
        if not os.path.isfile(path):
            raise DeclipError(f"landmark model {path} does not exist")
        return path
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # located, not imported (it imports pkg_resources)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = os.path.join(folder, "models", LANDMARK_MODEL)
        if os.path.isfile(found):
            return found
    raise DeclipError(f"no {LANDMARK_MODEL} ({MODEL_PACKAGE} is not installed): {FACES_EXTRA}")


def require_dlib():
    try:
        import dlib
    except ImportError:
        raise DeclipError(f"dlib is not installed: {FACES_EXTRA}") from None
    return dlib


def template(size=DEFAULT_SIZE, margin=DEFAULT_MARGIN):
    """The five target points in a ``size`` x ``size`` crop with ``margin`` (DeepfakeBench's arithmetic)."""
    dst = ARCFACE_112.copy()
    dst[:, 0] += 8.0
    dst[:, 0] = dst[:, 0] * size / 112
    dst[:, 1] = dst[:, 1] * size / 112
    pad = size * (margin - 1) / 2.0
    dst += pad
    dst *= size / (size + 2 * pad)
    return dst


def similarity_transform(src, dst):
    """The 2 x 3 similarity matrix mapping points ``src`` onto ``dst`` in the least-squares sense
    (Umeyama 1991, with scale; a reflection is never chosen). The sums and the SVD in float32 and the
    scale in float64, as scikit-image computes it from DeepfakeBench's float32 key points under numpy 1.x
    (DeepfakeBench's pin; numpy 2 would keep the scale in float32): the same matrix to the last bit."""
    src, dst = np.asarray(src, dtype=np.float32), np.asarray(dst, dtype=np.float32)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    d = np.ones(2, dtype=np.float64)
    if np.linalg.det(cov) < 0:
        d[1] = -1
    u, s, vt = np.linalg.svd(cov)
    rank = np.count_nonzero(s > s.max() * 2 * np.finfo(float).eps)
    if rank == 0:
        raise ValueError("degenerate key points (all at one place)")
    rot = np.eye(2, dtype=np.float64)
    if rank == 1 and np.linalg.det(u) * np.linalg.det(vt) <= 0:
        rot[:] = u @ np.diag([1.0, -1.0]) @ vt
    elif rank == 1:
        rot[:] = u @ vt
    else:
        rot[:] = u @ np.diag(d) @ vt
    scale = 1.0 / np.float64(src_c.var(axis=0).sum()) * (s @ d)  # float64, as numpy 1.x promotes it
    out = np.zeros((2, 3), dtype=np.float64)
    out[:, 2] = dst_mean - scale * (rot @ src_mean.T)
    out[:, :2] = rot * scale
    return out


AB_BITS, INTER_BITS = 10, 5  # OpenCV 4.x warpAffine: 1/1024 then 1/32 pixel fixed point


def warp_affine(image, matrix, size):
    """``cv2.warpAffine(image, matrix, size)`` (bilinear, constant 0 border) computed as OpenCV 4.x does,
    whatever OpenCV is installed (see the module docstring)."""
    m = np.asarray(matrix, dtype=np.float64).ravel().copy()
    det = m[0] * m[4] - m[1] * m[3]
    det = 1.0 / det if det != 0 else 0.0
    m[0], m[4] = m[4] * det, m[0] * det  # the inverse map: output pixel -> source pixel
    m[1], m[3] = -m[1] * det, -m[3] * det
    m[2], m[5] = -m[0] * m[2] - m[1] * m[5], -m[3] * m[2] - m[4] * m[5]
    w, h = size
    scale, tab = 1 << AB_BITS, 1 << INTER_BITS
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    x0 = np.rint((m[1] * ys + m[2]) * scale).astype(np.int64) + scale // tab // 2
    y0 = np.rint((m[4] * ys + m[5]) * scale).astype(np.int64) + scale // tab // 2
    x = (x0[:, None] + np.rint(m[0] * xs * scale).astype(np.int64)[None, :]) >> (AB_BITS - INTER_BITS)
    y = (y0[:, None] + np.rint(m[3] * xs * scale).astype(np.int64)[None, :]) >> (AB_BITS - INTER_BITS)
    whole = np.stack([x >> INTER_BITS, y >> INTER_BITS], axis=-1).clip(-32768, 32767).astype(np.int16)
    fraction = ((y & (tab - 1)) * tab + (x & (tab - 1))).astype(np.uint16)
    return cv2.remap(image, whole, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclasses.dataclass
class AlignedFace:
    """One face crop: ``image`` RGB uint8 (size, size, 3), ``mask`` uint8 (size, size) or None,
    ``landmarks`` int64 (68, 2) on the crop, ``keypoints`` (5, 2) on the frame, ``matrix`` 2 x 3
    (frame -> crop), ``box`` (left, top, right, bottom) of the detection on the frame."""

    image: np.ndarray
    mask: Optional[np.ndarray]
    landmarks: np.ndarray
    keypoints: np.ndarray
    matrix: np.ndarray
    box: tuple


class FaceAligner:
    """DeepfakeBench's aligned face crop of a frame (see the module docstring); one per process."""

    def __init__(self, size=DEFAULT_SIZE, margin=DEFAULT_MARGIN, model=None):
        dlib = require_dlib()
        self.model = landmark_model_path(model)
        self.size, self.margin = int(size), float(margin)
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(self.model)
        self.target = template(self.size, self.margin)

    def biggest_face(self, rgb):
        faces = self.detector(rgb, UPSAMPLE)
        return max(faces, key=lambda r: r.width() * r.height()) if len(faces) else None

    def keypoints(self, rgb, box):
        shape = self.predictor(rgb, box)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in KEYPOINTS], dtype=np.float32)

    def align(self, rgb, mask=None):
        """The :class:`AlignedFace` of RGB uint8 frame ``rgb`` (and its mask), or None without a face."""
        rgb = np.ascontiguousarray(rgb)
        box = self.biggest_face(rgb)
        if box is None:
            return None
        points = self.keypoints(rgb, box)
        matrix = similarity_transform(points, self.target)
        crop = warp_affine(rgb, matrix, (self.size, self.size))
        warped_mask = warp_affine(mask, matrix, (self.size, self.size)) if mask is not None else None
        landmarks = self.crop_landmarks(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        if landmarks is None:
            return None
        return AlignedFace(crop, warped_mask, landmarks, points, matrix,
                           (box.left(), box.top(), box.right(), box.bottom()))

    def crop_landmarks(self, crop_bgr):
        """The 68 landmarks on the crop, found as DeepfakeBench finds them (on its BGR copy, first box)."""
        faces = self.detector(crop_bgr, UPSAMPLE)
        if not len(faces):
            return None
        shape = self.predictor(crop_bgr, faces[0])
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.int64)


__all__ = ["FaceAligner", "AlignedFace", "landmark_model_path", "similarity_transform", "template", "warp_affine",
           "KEYPOINTS",
           "LANDMARK_MODEL", "FACES_EXTRA"]
