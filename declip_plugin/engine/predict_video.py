"""``declip predict`` on a video file: its frames made as the checkpoint's training frames were made,
a score per frame, the video's score, mask overlays, the ``--explain`` strip.

For one video (engine/preprocessing.py decides the :class:`~.preprocessing.Preprocessing`):

1. decode it once, front to back, and sample its frames (media/video.py: DeepfakeBench's
   ``fixed_num_frames`` / ``fixed_stride``, over the frames that decode);
2. with ``faces: dlib``, crop each sampled frame as ``declip prepare`` crops it (media/faces.py, the
   same aligner, so the same crop for the same frame); a frame without a face is left out, as
   DeepfakeBench's preprocessing leaves it out; a video without a face in any sampled frame is an error;
3. resize and normalise each frame as the training data was (data/transforms.py SampleTransform,
   the resize policy; the test split's transform: no augmentation);
4. score: a frame detector scores every frame; a clip detector (``input_kind: clip``) keeps
   ``frame_num`` (test) of the frames when its config sets one (as its test set) and scores clips of
   ``clip_size`` consecutive ones, placed as ``declip test`` places them (data/video.py
   clip_segments: the first start of each segment); each frame gets the score of its clip;
5. the video's score is the mean of its frame scores (DeepfakeBench's video AUC averages a video's
   frame predictions; for a clip detector the mean of its clips).

Everything is computed before a file is written, so a video that fails leaves nothing. Files of a
video ``<stem>`` in the output folder: ``<stem>/<frame>_mask.png`` and ``<stem>/<frame>_overlay.png``
(a detector with a mask decoder; the overlay over the frame the detector saw, the face crop with
faces), ``<stem>_strip.png`` (``--explain``: up to :data:`STRIP_FRAMES` frames spread over the
video, or the clip with the highest score, over their Grad-CAM and attention-rollout maps).
"""
import dataclasses
import logging
import os

import cv2
import numpy as np
import torch

from ..atomicio import write_png
from ..data.transforms import SampleTransform
from ..data.video import clip_segments, clip_size_of, select_evenly
from ..detectors import capability
from ..errors import DataError
from ..media.video import VIDEO_EXTENSIONS, MediaError, is_video_file, open_frames, quiet_decoder_logs
from .explain import explain, overlay, strip_image

logger = logging.getLogger(__name__)

STRIP_FRAMES = 8


@dataclasses.dataclass
class Decoded:
    """The frames of one video the detector will see: ``frames`` [(index, RGB uint8, face box or None)]
    in order; ``no_face`` the sampled indices without a face; counts as media/video.py's Frames."""

    path: str
    frames: list
    no_face: list
    sampled: int
    decoded: int
    header: int


def find_videos(folder):
    """The video files under ``folder`` (any depth, hidden entries left out), sorted by path."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files) if is_video_file(f) and not f.startswith(".")]
    return found


def face_aligner(policy):
    """The FaceAligner ``policy`` needs (None for whole frames); fails at once when dlib or its model is
    missing. Also silences FFmpeg's own messages (a video that does not decode is reported naming it)."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        quiet_decoder_logs()
    if policy.faces != "dlib":
        return None
    from ..media.faces import FaceAligner

    return FaceAligner(policy.size, policy.margin)


def decode(path, policy, aligner):
    """The :class:`Decoded` frames of video ``path`` (MediaError naming it when it cannot be read)."""
    frames = open_frames(str(path), policy.sampling, kind="video")
    got, no_face = {}, []
    try:
        for index, rgb, _ in frames:
            if aligner is None:
                got[index] = (rgb, None)
                continue
            face = aligner.align(rgb)
            if face is None:
                no_face.append(index)
            else:
                got[index] = (face.image, list(face.box))
    except cv2.error as e:
        raise MediaError(f"video {path}: a frame does not decode ({' '.join(str(e).split())[:160]})") from None
    if not frames.decoded:
        raise MediaError(f"video {path}: no frame decodes (a video without frames, or a corrupt one)")
    if frames.header and frames.header != frames.decoded:
        logger.warning("video %s: its header says %d frames, %d decode: frames sampled over the %d", path,
                       frames.header, frames.decoded, frames.decoded)
    keep = set(frames.indices)
    sampled = sorted(keep)
    if not any(i in keep for i in got):
        raise MediaError(f"video {path}: no face in any of its {len(sampled)} sampled frames (dlib's frontal face "
                         f"detector); --faces none scores whole frames")
    return Decoded(str(path), [(i, *got[i]) for i in sampled if i in got], sorted(i for i in no_face if i in keep),
                   len(sampled), frames.decoded, frames.header)


def _device(detector):
    return next((p.device for p in detector.parameters()), torch.device("cpu"))


def _inputs(config, policy, frames):
    transform = SampleTransform(config, train=False, resize=policy.resize)
    return torch.stack([transform(rgb)[0] for _, rgb, _ in frames])


def _score_frames(detector, config, x):
    """p(fake) (N,) and mask probabilities (N, h, w) or None of frames ``x`` (N, 3, R, R), in batches."""
    batch = config.test_batchSize
    probs, masks = [], []
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            pred = detector({"image": x[start:start + batch].to(_device(detector))}, inference=True)
            probs.append(pred["prob"].float().reshape(-1).cpu())
            if pred.get("mask") is not None:
                masks.append(torch.sigmoid(pred["mask"].float())[:, 0].cpu())
    return torch.cat(probs), (torch.cat(masks) if masks else None)


def _clips(config, n, path):
    """``[(start, end)]`` of the clips of ``n`` frames, as ``declip test`` cuts a video of its test set."""
    size = clip_size_of(config, "the checkpoint's config")
    segments = clip_segments(n, size)
    if not segments:
        raise DataError(f"video {path}: {n} frame(s) to score, and the detector takes clips of clip_size={size} "
                        f"frames: sample more (--num_frames) or use a video with more frames" +
                        (" with a face" if n else ""))
    return [(lo, lo + size) for lo, _ in segments]


def score(detector, config, policy, decoded, explain_maps=False):
    """Per-frame records, the video's p(fake), per-frame masks (or None) and the strip (or None)."""
    frames = decoded.frames
    clip = capability(detector, "input_kind") == "clip"
    if clip or config.video_mode:
        frames = select_evenly(frames, config.frames_per_video("test"))
    x = _inputs(config, policy, frames)
    rows = [{"frame": i, **({"face_box": box} if box is not None else {})} for i, _, box in frames]
    masks, strip = None, None
    if clip:
        spans = _clips(config, len(frames), decoded.path)
        with torch.inference_mode():
            clip_probs = [float(detector({"image": x[a:b][None].to(_device(detector))}, inference=True)["prob"]
                                .float().reshape(-1)[0]) for a, b in spans]
        rows = [dict(rows[j], clip=k, prob_fake=p) for k, ((a, b), p) in enumerate(zip(spans, clip_probs))
                for j in range(a, b)]
        prob = float(np.mean(clip_probs))
        if explain_maps:
            a, b = spans[int(np.argmax(clip_probs))]
            strip = _strip(detector, x[a:b][None], [f[1] for f in frames[a:b]], [f[0] for f in frames[a:b]])
    else:
        probs, masks = _score_frames(detector, config, x)
        for row, p in zip(rows, probs.tolist()):
            row["prob_fake"] = p
        prob = float(probs.mean())
        if explain_maps:
            pick = select_evenly(range(len(frames)), STRIP_FRAMES)
            strip = _strip(detector, x[pick], [frames[j][1] for j in pick], [frames[j][0] for j in pick])
    crops = {i: rgb for i, rgb, _ in frames}
    return rows, prob, masks, crops, strip


def _strip(detector, x, frames_rgb, indices):
    maps = explain(detector, {"image": x.to(_device(detector))})
    return {"image": strip_image(frames_rgb, maps), "frames": list(indices), "gradcam_method": maps["gradcam_method"]}


def predict_video(detector, config, policy, aligner, path, out_dir, stem, threshold, explain_maps=False):
    """The record of one video (see the module docstring); its files written last."""
    decoded = decode(path, policy, aligner)
    rows, prob, masks, crops, strip = score(detector, config, policy, decoded, explain_maps)
    for row in rows:
        row["label"] = "fake" if row["prob_fake"] > threshold else "real"
    record = {"image": str(path), "kind": "video", "frames": len(rows), "prob_fake": prob,
              "label": "fake" if prob > threshold else "real", "faces": policy.faces, "sampled": decoded.sampled,
              "decoded": decoded.decoded, "no_face": decoded.no_face, "per_frame": rows}
    if masks is not None:
        _write_masks(out_dir, stem, rows, masks, crops)
        record["manipulated_fraction"] = float(np.mean([r["manipulated_fraction"] for r in rows]))
    if strip is not None:
        record["strip"] = write_png(os.path.join(out_dir, f"{stem}_strip.png"),
                                    cv2.cvtColor(strip["image"], cv2.COLOR_RGB2BGR))
        record.update(strip_frames=strip["frames"], gradcam_method=strip["gradcam_method"])
    return record


def _write_masks(out_dir, stem, rows, masks, crops):
    """``<stem>/<frame>_mask.png`` and ``_overlay.png`` per frame, the mask at the size of the frame seen."""
    for row, mask in zip(rows, masks):
        rgb = crops[row["frame"]]
        h, w = rgb.shape[:2]
        m = torch.nn.functional.interpolate(mask[None, None], size=(h, w), mode="bilinear",
                                            align_corners=False)[0, 0].clamp(0, 1).numpy()
        base = os.path.join(out_dir, stem, f"{row['frame']:03d}")
        row.update(manipulated_fraction=float((m > 0.5).mean()),
                   mask=write_png(base + "_mask.png", (m * 255 + 0.5).astype(np.uint8)),
                   overlay=write_png(base + "_overlay.png", overlay(rgb, m)))


__all__ = ["Decoded", "STRIP_FRAMES", "VIDEO_EXTENSIONS", "decode", "face_aligner", "find_videos", "predict_video",
           "score"]
