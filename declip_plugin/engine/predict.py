"""`declip predict`: fake probability, mask PNG, heat-map overlay and a JSON summary per image."""
import logging
import os

import cv2
import numpy as np
import torch

from ..atomicio import check_output_dir, write_json, write_png
from ..checkpoints import read_detector_checkpoint
from ..config import load_run_config
from ..data.images import read_image
from ..data.transforms import CLIP_MEAN, CLIP_STD, resize_image, to_tensor
from ..detectors import build_detector, capability
from ..errors import CheckpointError, ConfigError, DeclipError
from ..plugins import get_registry
from . import runtime
from .explain import overlay

logger = logging.getLogger(__name__)


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

    files = frame_files(folder, int(config.get("clip_size") or 8))
    if capability(detector, "input_kind") == "clip" and len(files) < int(config.get("clip_size") or 1):
        raise ConfigError(f"{folder}: {len(files)} frames; {config.get('model_name')!r} takes clips of "
                          f"{config.get('clip_size')} frames")
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


def predict(images, weights_path, detector_path=None, out_dir="predictions", threshold=0.5, overrides=None,
            explain=False):
    """Predict every image (or video: a folder of frames); a bad one is reported and skipped. Returns
    (records, errors).

    ``explain``: also write a Grad-CAM overlay (and an attention-rollout overlay for ViT towers) per
    image (engine/explain.py). A detector without a decoder writes no mask."""
    check_output_dir(out_dir, "--out")
    ckpt = read_detector_checkpoint(weights_path)
    config = config_for_checkpoint(ckpt, detector_path, overrides)
    device = runtime.resolve_device(config)
    detector = build_detector(config, weights_path=ckpt).to(device).eval()
    clips = capability(detector, "input_kind") != "frame"
    if clips:  # refused before anything is written (no predictions.json of a command that did nothing)
        for path in images:
            if not os.path.isdir(path):
                raise ConfigError(f"{path}: detector {config.get('model_name')!r} takes clips of frames; give a "
                                  f"folder of a video's frames (e.g. DeepfakeBench's frames/<video>/)")
    mean, std = config.get("mean"), config.get("std")
    size = int(config.get("resolution", 224))
    os.makedirs(out_dir, exist_ok=True)
    records, errors, used = [], [], set()
    for path in images:
        if os.path.isdir(path) or clips:
            try:
                records.append(_predict_video(detector, config, path, out_dir, _stem(path, used, records), threshold,
                                              explain))
            except DeclipError as exc:
                errors.append({"image": str(path), "error": str(exc)})
            continue
        try:
            rgb = read_image(path)
        except DeclipError as exc:  # reported by the caller, once
            errors.append({"image": str(path), "error": str(exc)})
            continue
        x = to_tensor(resize_image(rgb, size), mean or CLIP_MEAN, std or CLIP_STD)[None].to(device)
        with torch.inference_mode():
            pred = detector({"image": x}, inference=True)
        prob = float(pred["prob"][0])
        h, w = rgb.shape[:2]
        stem = _stem(path, used, records)
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
        records.append(record)
    write_json(os.path.join(out_dir, "predictions.json"),
               {"weights": str(weights_path), "detector": capability(detector, "describe"), "threshold": threshold,
                "predictions": records, "errors": errors})
    return records, errors
