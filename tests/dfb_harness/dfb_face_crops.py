"""DeepfakeBench's own face crop of videos, for the parity test (run in DeepfakeBench's environment).

    python dfb_face_crops.py PREPROCESSING_DIR LANDMARK_MODEL NUM_FRAMES OUT.npz VIDEO[:MASK_VIDEO] ...

Imports ``extract_aligned_face_dlib`` from the checkout's preprocessing/preprocess.py and runs it as
its ``video_manipulate`` does: every frame read with ``cv2.VideoCapture.read`` (the mask video in
step), the frames of ``np.linspace(0, count - 1, NUM_FRAMES, dtype=int)`` cropped with dlib's frontal
face detector and the given landmark model, the mask thresholded at 1. Writes, per video k and frame
i, ``k/i/image`` (BGR, as it writes the PNG), ``k/i/landmarks`` and ``k/i/mask``; a frame without a
face has no entry.
"""
import importlib.util
import os
import sys

import cv2
import dlib
import numpy as np


def _preprocess(folder):
    spec = importlib.util.spec_from_file_location("dfb_preprocess", os.path.join(folder, "preprocess.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_all(path):
    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def main(folder, model, num_frames, out, videos):
    pre = _preprocess(folder)
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(model)
    result = {}
    for k, spec in enumerate(videos):
        video, _, mask_video = spec.partition(":")
        frames = _read_all(video)
        masks = _read_all(mask_video) if mask_video else None
        count = len(frames) if masks is None else min(len(frames), len(masks))
        for i in np.linspace(0, count - 1, int(num_frames), endpoint=True, dtype=int):
            mask = masks[i] if masks is not None else None
            face, landmarks, mask_face = pre.extract_aligned_face_dlib(detector, predictor, frames[i], mask=mask)
            if face is None:
                continue
            result[f"{k}/{i}/image"] = face
            result[f"{k}/{i}/landmarks"] = landmarks
            if mask_face is not None:
                result[f"{k}/{i}/mask"] = cv2.threshold(mask_face, 1, 255, cv2.THRESH_BINARY)[1]
    np.savez(out, **result)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
