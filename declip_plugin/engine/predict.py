"""`declip predict`: fake probability, mask PNG, heat-map overlay and a JSON summary per image."""
import logging
import os

import cv2
import numpy as np
import torch

from ..atomicio import atomic_write_bytes
from ..checkpoints import read_detector_checkpoint
from ..config import load_detector_config, load_run_config, merge
from ..data.io import read_image
from ..data.transforms import CLIP_MEAN, CLIP_STD, resize_image, to_tensor
from ..detectors import build_detector
from ..errors import DeclipError
from . import runtime
from .rundir import write_json

logger = logging.getLogger(__name__)


def config_for_checkpoint(ckpt, detector_path=None, overrides=None):
    """The detector config of a checkpoint: ``detector_path`` if given, else what the file records
    (our checkpoints), else the bundled DeCLIP config fitted to an official file."""
    if detector_path:
        return load_run_config(detector_path, "test", overrides)
    meta = ckpt.meta
    if ckpt.format == "declip-plugin" and meta.get("backbone"):
        cfg = load_detector_config("declip")
        cfg.update({k: meta[k] for k in ("backbone", "feature_layer", "decoder_type", "fully_supervised",
                                         "resolution") if k in meta})
        if not str(meta.get("pretrained", "")).startswith("checkpoint:"):
            cfg["pretrained"] = meta.get("pretrained", cfg["pretrained"])
    else:  # official (or plain) file: the released models are ViT-L/14 or the ViT-L/14,RN50 fusion
        first = ckpt.state.get("decoder.layers.0.weight")
        fusion = first is not None and first.dim() == 4 and first.shape[1] == 2048
        cfg = load_detector_config("declip_vit_rn50" if fusion else "declip")
        cfg.update({k: meta[k] for k in ("feature_layer", "decoder_type") if meta.get(k)})
    return merge(cfg, overrides or {})


def overlay(rgb, prob, alpha=0.45):
    """Blend a JET heat map of ``prob`` (H, W in [0,1]) over ``rgb`` (H, W, 3 uint8); returns BGR."""
    heat = cv2.applyColorMap((prob * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(bgr, 1 - alpha, heat, alpha, 0)


def _write_png(path, img):
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"cannot encode {path}")
    atomic_write_bytes(path, buf.tobytes())


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
        _write_png(path, overlay(rgb, m))
        out[key] = path
    return out


def predict(images, weights_path, detector_path=None, out_dir="predictions", threshold=0.5, overrides=None,
            explain=False):
    """Predict every image; a bad image is reported and skipped. Returns (records, errors).

    ``explain``: also write a Grad-CAM overlay (and an attention-rollout overlay for ViT towers) per
    image (engine/explain.py). A detector without a decoder writes no mask."""
    ckpt = read_detector_checkpoint(weights_path)
    config = config_for_checkpoint(ckpt, detector_path, overrides)
    device = runtime.resolve_device(config)
    detector = build_detector(config, weights_path=ckpt).to(device).eval()
    mean, std = config.get("mean"), config.get("std")
    size = int(config.get("resolution", 224))
    os.makedirs(out_dir, exist_ok=True)
    records, errors, used = [], [], set()
    for path in images:
        try:
            rgb = read_image(path)
        except DeclipError as exc:
            logger.error("%s", exc)
            errors.append({"image": str(path), "error": str(exc)})
            continue
        x = to_tensor(resize_image(rgb, size), mean or CLIP_MEAN, std or CLIP_STD)[None].to(device)
        with torch.inference_mode():
            pred = detector({"image": x}, inference=True)
        prob = float(pred["prob"][0])
        h, w = rgb.shape[:2]
        stem = os.path.splitext(os.path.basename(str(path)))[0]
        if stem in used:  # same file name from two folders
            stem = f"{stem}_{len(records)}"
        used.add(stem)
        record = {"image": str(path), "prob_fake": prob, "label": "fake" if prob > threshold else "real"}
        if pred.get("mask") is not None:
            mask = torch.sigmoid(pred["mask"].float())
            mask = torch.nn.functional.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            mask = mask.clamp(0, 1).cpu().numpy()
            mask_path = os.path.join(out_dir, f"{stem}_mask.png")
            overlay_path = os.path.join(out_dir, f"{stem}_overlay.png")
            _write_png(mask_path, (mask * 255 + 0.5).astype(np.uint8))
            _write_png(overlay_path, overlay(rgb, mask))
            record.update(manipulated_fraction=float((mask > 0.5).mean()), mask=mask_path, overlay=overlay_path)
        if explain:
            from .explain import explain as explain_maps

            record.update(_write_maps(out_dir, stem, rgb, explain_maps(detector, {"image": x})))
        records.append(record)
    write_json(os.path.join(out_dir, "predictions.json"),
               {"weights": str(weights_path), "detector": detector.describe() if hasattr(detector, "describe")
                else config.get("model_name"), "threshold": threshold, "predictions": records, "errors": errors})
    return records, errors
