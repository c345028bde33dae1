"""Short videos of a real face for the face-crop tests: scikit-image's ``data.astronaut()`` (a
photograph with one face, shipped by the package), moving, zooming and rotating a few degrees, with a
stretch of frames that show no face (scikit-image's ``data.coffee()``), in two containers and codecs
(mp4 / MPEG-4 part 2, avi / Motion JPEG). The fakes get mask videos (mkv / FFV1, lossless), a white
ellipse on the face that moves with it, as FaceForensics++ ships masks.

The file stems are chosen by the split rule of ``declip prepare --split hash``: ``clip0`` lands in
train, ``clip9`` in val and ``clip4`` in test, so the set has train and test videos of each label and
a fake in every split (`declip train` validates on the val split).
"""
import os

import cv2
import numpy as np

FRAMES = 12
NO_FACE = (5, 6, 7)  # frames without a face
SIZE = (320, 240)  # width, height
FACE_CENTRE, FACE_AXES = (220, 135), (60, 80)  # the face in the 512 x 512 photograph
TRAIN_STEM, VAL_STEM, TEST_STEM = "clip0", "clip9", "clip4"
#: (label folder, stem, extension, fourcc) of the set
VIDEOS = (("real", TRAIN_STEM, "mp4", "mp4v"), ("real", TEST_STEM, "avi", "MJPG"),
          ("fake", TRAIN_STEM, "avi", "MJPG"), ("fake", VAL_STEM, "mp4", "mp4v"), ("fake", TEST_STEM, "mp4", "mp4v"))
MASK_CODEC = ("mkv", "FFV1")


def _photos():
    """The astronaut without the mission patch on her suit (dlib's detector finds a face in it, bigger
    than hers in some frames), and a photograph without a face."""
    from skimage import data

    face = data.astronaut().copy()
    face[300:] = face[300:].mean(axis=(0, 1), keepdims=True).astype(np.uint8)
    return face, data.coffee()


def _matrix(t, n, size, seed):
    """Frame t's transform of the photograph: a drift, a zoom in, a rotation from -4 to +4 degrees."""
    w, h = size
    angle = -4.0 + 8.0 * t / n + seed
    scale = 0.5 + 0.12 * t / n
    m = cv2.getRotationMatrix2D((256.0, 256.0), angle, scale)
    m[0, 2] += (w - 512) / 2.0 + 2.5 * t + 4 * seed
    m[1, 2] += (h - 512) / 2.0 + 25 - 1.5 * t
    return m


def frames(n=FRAMES, size=SIZE, no_face=NO_FACE, seed=0):
    """``(RGB frames, masks)``: n frames (H, W, 3) and uint8 masks (H, W) of the moving face."""
    face, other = _photos()
    mask = np.zeros(face.shape[:2], np.uint8)
    cv2.ellipse(mask, FACE_CENTRE, FACE_AXES, 0, 0, 360, 255, -1)
    out, masks = [], []
    for t in range(n):
        m = _matrix(t, n, size, seed)
        if t in no_face:
            out.append(cv2.resize(other, size, interpolation=cv2.INTER_AREA))
            masks.append(np.zeros(size[::-1], np.uint8))
        else:
            out.append(cv2.warpAffine(face, m, size))
            masks.append(cv2.warpAffine(mask, m, size, flags=cv2.INTER_NEAREST))
    return out, masks


def write_video(path, rgb_frames, fourcc, fps=25):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h, w = rgb_frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for f in rgb_frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR) if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    return path


def make_set(root, videos=VIDEOS, n=FRAMES):
    """``root/{real,fake}/<stem>.<ext>`` and ``root/masks/<stem>.mkv`` for the fakes; returns
    {relative path: (video path, mask path or None)}."""
    out = {}
    for k, (label, stem, ext, fourcc) in enumerate(videos):
        rgb, masks = frames(n, seed=k)
        video = write_video(os.path.join(root, label, f"{stem}.{ext}"), rgb, fourcc)
        mask = None
        if label == "fake":
            mask = write_video(os.path.join(root, "masks", f"{stem}.{MASK_CODEC[0]}"), masks, MASK_CODEC[1])
        out[f"{label}/{stem}.{ext}"] = (video, mask)
    return out
