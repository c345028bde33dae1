"""`declip predict`: fake probability, mask PNG, heat-map overlay per image; per frame and per video for videos
(engine/predict_video.py); predictions.json and predictions.csv."""
import logging
import os

import cv2
import numpy as np
import torch

from ..atomicio import check_output_dir, write_csv, write_json, write_png
from ..checkpoints import read_detector_checkpoint
from ..config import load_run_config
from ..data.images import read_image
from ..data.transforms import resize_image, to_tensor
from ..detectors import build_detector, capability
from ..errors import CheckpointError, ConfigError, DataError, DeclipError
from ..media.video import VIDEO_EXTENSIONS, is_video_file
from ..plugins import get_registry
from . import runtime
from .explain import FRAME_EXTS, overlay
from .predict_video import face_aligner, find_videos, predict_video

logger = logging.getLogger(__name__)

#: the files of a prediction run in its --out folder
PREDICTIONS_JSON = "predictions.json"
PREDICTIONS_CSV = "predictions.csv"
#: predictions.csv: ``kind`` image | frame | video; ``input`` the file or folder given; ``frame`` the
#: frame's index in the decoded video and ``clip`` its clip (clip detectors); ``frames`` a video's
#: number of scored frames; the mask columns for detectors with a mask decoder (a video: the mean)
CSV_FIELDS = ("kind", "input", "frame", "clip", "frames", "prob_fake", "label", "manipulated_fraction", "mask",
              "overlay")


def config_for_checkpoint(ckpt, detector_path=None, overrides=None):
    """The run config for a checkpoint: ``detector_path`` if given, else the config the file records
    (our format), else the config a registered detector rebuilds from its own release format
    (``config_from_checkpoint(ckpt)``, e.g. the official DeCLIP files)."""
    if detector_path:
        return load_run_config(detector_path, "test", overrides)
    config = ckpt.config
    if config is None:
        for _, cls in get_registry("detectors").items():
            rebuild = getattr(cls, "config_from_checkpoint", None)
            config = rebuild(ckpt) if rebuild is not None else None
            if config is not None:
                break
    if config is None:
        raise CheckpointError(f"checkpoint {ckpt.path} ({ckpt.format} format) does not say which detector it holds: "
                              f"pass --detector_path with the YAML it was trained with")
    return load_run_config(config, "test", overrides)


def _write_maps(out_dir, stem, rgb, maps, index=0):
    """Grad-CAM (and attention rollout) overlays of one image; returns their paths."""
    h, w = rgb.shape[:2]
    out = {}
    for key in ("gradcam", "attention"):
        m = maps.get(key)
        if m is None:
            continue
        m = torch.nn.functional.interpolate(m[index][None, None].float(), size=(h, w), mode="bilinear",
                                            align_corners=False)[0, 0].clamp(0, 1).cpu().numpy()
        path = os.path.join(out_dir, f"{stem}_{key}.png")
        write_png(path, overlay(rgb, m))
        out[key] = path
    return out


def _stem(path, used, records):
    stem = os.path.splitext(os.path.basename(os.path.normpath(str(path))))[0]
    if stem in used:  # same file name from two folders
        stem = f"{stem}_{len(records)}"
    used.add(stem)
    return stem


def _predict_video(detector, config, folder, out_dir, stem, threshold, explain):
    """One video given as a folder of frames: p(fake) of a clip of ``clip_size`` (default 8) frames spread
    over it; with ``explain`` a strip PNG (frames over their Grad-CAM and attention-rollout overlays)."""
    from .explain import explain_frames, frame_files

    if not os.path.isdir(folder):
        raise ConfigError(f"{folder}: detector {config.model_name!r} takes clips of frames; give a video file "
                          f"or a folder of a video's frames (e.g. DeepfakeBench's frames/<video>/)")
    files = frame_files(folder, config.clip_size or 8)
    if capability(detector, "input_kind") == "clip" and len(files) < (config.clip_size or 1):
        raise ConfigError(f"{folder}: {len(files)} frames; {config.model_name!r} takes clips of "
                          f"{config.clip_size} frames")
    if explain:
        prob, strip, maps = explain_frames(detector, config, files)
    else:
        from ..data.images import read_image
        from .explain import clip_input

        data = clip_input(detector, config, [read_image(f) for f in files])
        device = next((p.device for p in detector.parameters()), torch.device("cpu"))
        with torch.inference_mode():
            prob = float(detector({"image": data["image"].to(device)}, inference=True)["prob"].float().mean())
    record = {"image": str(folder), "frames": len(files), "prob_fake": prob,
              "label": "fake" if prob > threshold else "real"}
    if explain:
        record["strip"] = write_png(os.path.join(out_dir, f"{stem}_strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        record["gradcam_method"] = maps["gradcam_method"]
    return record


def _predict_image(detector, config, device, path, out_dir, stem, threshold, explain):
    """One image file: p(fake), and the mask and overlay PNGs of a detector with a mask decoder."""
    rgb = read_image(path)
    mean, std = config.normalisation()
    x = to_tensor(resize_image(rgb, config.resolution), mean, std)[None]
    x = x.to(device)
    with torch.inference_mode():
        pred = detector({"image": x}, inference=True)
    prob = float(pred["prob"][0])
    h, w = rgb.shape[:2]
    record = {"image": str(path), "prob_fake": prob, "label": "fake" if prob > threshold else "real"}
    if pred.get("mask") is not None:
        mask = torch.sigmoid(pred["mask"].float())
        mask = torch.nn.functional.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        mask = mask.clamp(0, 1).cpu().numpy()
        mask_path = os.path.join(out_dir, f"{stem}_mask.png")
        overlay_path = os.path.join(out_dir, f"{stem}_overlay.png")
        write_png(mask_path, (mask * 255 + 0.5).astype(np.uint8))
        write_png(overlay_path, overlay(rgb, mask))
        record.update(manipulated_fraction=float((mask > 0.5).mean()), mask=mask_path, overlay=overlay_path)
    if explain:
        from .explain import explain as explain_maps

        record.update(_write_maps(out_dir, stem, rgb, explain_maps(detector, {"image": x})))
    return record


def expand_inputs(paths):
    """``[(kind, path)]`` of the command line's inputs: ``video`` (a video file, or each video under a
    folder that holds some), ``frames`` (a folder of a video's frames) or ``image``."""
    out = []
    for path in map(str, paths):
        if os.path.isdir(path):
            videos = find_videos(path)
            out += [("video", v) for v in videos] if videos else [("frames", path)]
            if videos and any(n.lower().endswith(FRAME_EXTS) for n in os.listdir(path)):
                logger.warning("%s: %d video(s) under it are predicted; its image files are not read as the frames "
                               "of a video", path, len(videos))
        else:
            out.append(("video" if is_video_file(path) else "image", path))
    return out


def _check_frame_folder(folder):
    if not any(n.lower().endswith(FRAME_EXTS) for n in os.listdir(folder)):
        raise DataError(f"{folder}: no videos ({', '.join(VIDEO_EXTENSIONS)}) or frames ({', '.join(FRAME_EXTS)}) "
                        f"in this folder")


def _video_setup(config, inputs, options, ckpt):
    """The :class:`~.preprocessing.Preprocessing` and face aligner of the run's videos (None, None
    without videos); everything checked here, before any file is written."""
    if not any(kind == "video" for kind, _ in inputs):
        given = [f"--{k}" for k, v in options.items() if v is not None]
        if given:
            logger.warning("%s: for video files only; no video among the inputs", ", ".join(given))
        return None, None
    from .preprocessing import resolve

    policy = resolve(config, checkpoint=ckpt.path, recorded=ckpt.frames, **options)
    logger.info("%s", policy.describe())
    return policy, face_aligner(policy)


def predict(images, weights_path, detector_path=None, out_dir="predictions", threshold=0.5, overrides=None,
            explain=False, video_options=None):
    """Predict every input: image files, folders of a video's frames, video files and folders of videos
    (engine/predict_video.py; ``video_options``: faces, resize, mode, num_frames, stride, see
    engine/preprocessing.py). A bad input is reported and skipped. Returns (records, errors); the
    outputs (predictions.json, predictions.csv) are written only when some input was predicted.

    ``explain``: also write a Grad-CAM overlay (and an attention-rollout overlay for ViT towers) per
    image, a strip per video (engine/explain.py). A detector without a decoder writes no mask."""
    check_output_dir(out_dir, "--out")
    ckpt = read_detector_checkpoint(weights_path)
    config = config_for_checkpoint(ckpt, detector_path, overrides)
    device = runtime.resolve_device(config)
    detector = build_detector(config, weights_path=ckpt).to(device).eval()
    clips = capability(detector, "input_kind") != "frame"
    inputs = expand_inputs(images)
    policy, aligner = _video_setup(config, inputs, video_options or {}, ckpt)
    records, errors, used = [], [], set()
    for kind, path in inputs:
        try:
            stem = _stem(path, used, records)
            if kind == "video":
                record = predict_video(detector, config, policy, aligner, path, out_dir, stem, threshold, explain)
            elif kind == "frames" or clips:
                if kind == "frames":
                    _check_frame_folder(path)
                record = _predict_video(detector, config, path, out_dir, stem, threshold, explain)
            else:
                record = _predict_image(detector, config, device, path, out_dir, stem, threshold, explain)
        except DeclipError as exc:  # reported by the caller, once
            errors.append({"image": str(path), "error": str(exc)})
            continue
        records.append(record)
    if records:
        summary = {"weights": str(weights_path), "detector": capability(detector, "describe"), "threshold": threshold,
                   "predictions": records, "errors": errors}
        if policy is not None:
            summary["preprocessing"] = policy.record()
        write_csv(os.path.join(out_dir, PREDICTIONS_CSV), csv_rows(records), CSV_FIELDS)
        write_json(os.path.join(out_dir, PREDICTIONS_JSON), summary)
    return records, errors


def csv_rows(records):
    """The rows of predictions.csv: one per image; per video, one per scored frame, then the video's."""
    rows = []
    for r in records:
        kind = r.get("kind") or ("video" if "frames" in r else "image")
        for f in r.get("per_frame", []):
            rows.append({"kind": "frame", "input": r["image"], **f})
        rows.append({"kind": kind, "input": r["image"], **{k: v for k, v in r.items() if k in CSV_FIELDS}})
    return rows
