"""Maps for detectors without a decoder: Grad-CAM per image or frame, attention rollout for ViTs.

``explain(detector, data_dict)`` returns::

    {"gradcam":   (N, h, w) float in [0, 1],   N = B images, or B * T frames of (B, T, 3, H, W) clips
     "gradcam_method": "feature" | "input",
     "attention": (N, g, g) float in [0, 1] or None (no open_clip ViT tower in the detector)}

* **Grad-CAM** (Selvaraju et al.): the gradient of the fake-vs-real logit difference
  (``cls[:, 1] - cls[:, 0]``) with respect to a feature map ``A`` (C, h, w) weights its channels by
  their spatially averaged gradient; the map is ``relu(sum_c w_c A_c)``. The feature map is the
  detector's ``explain_tap()`` module output when it has one (clip_stan: the last CLIP block's patch
  tokens; timesformer: the frame encoder's map), else its ``backbone`` output when that is a map
  (B, C, h, w) or ViT tokens (B, 1 + g*g, C). Tokens are laid out on their g x g grid (CLS dropped).
  Without either, the input gradient (``|d logit / d image|`` summed over colours, the saliency the
  DeepFakesDetection analysis calls Grad-CAM for CLIP) is used: ``gradcam_method: input``.
* **Attention rollout** (Abnar & Zuidema): for every block of the detector's ViT tower (the blocks
  its ``attention_blocks()`` capability declares; none: no rollout),
  the head-averaged attention (recomputed from the block's input, since open_clip does not return
  it) plus the identity, rows renormalised, multiplied through the blocks; the CLS row over the
  patches is the map.

Each map is scaled to [0, 1] per image (min-max; a flat map is all zeros). The detector is left in eval mode with its
gradients cleared.
"""
import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def _frames(image):
    return image.flatten(0, 1) if image.dim() == 5 else image


def _normalize(maps):
    """Min-max to [0, 1] per map; a map flat up to float rounding (range <= 1e-5 of its magnitude)
    is all zeros rather than amplified rounding noise."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    span = hi - lo
    flat_map = span <= 1e-5 * torch.maximum(hi.abs(), lo.abs()).clamp_min(1e-12)
    out = (flat - lo) / span.clamp_min(1e-12)
    return torch.where(flat_map, torch.zeros_like(out), out).view_as(maps)


def _as_grid(act):
    """(N, C, h, w) from a feature map or from ViT tokens (N, 1 + g*g, C) / (N, g*g, C)."""
    if act.dim() == 4:
        return act
    if act.dim() == 3:
        n, length, c = act.shape
        g = int(round(length ** 0.5))
        if g * g != length:
            act, length = act[:, 1:], length - 1
            g = int(round(length ** 0.5))
        if g * g != length:
            return None
        return act.transpose(1, 2).reshape(n, c, g, g)
    return None


def _tap(detector):
    tap = getattr(detector, "explain_tap", None)
    if callable(tap):
        return tap()
    backbone = getattr(detector, "backbone", None)
    if backbone is not None and getattr(backbone, "kind", None) in ("tokens", "map"):
        return backbone
    return None


def _score(detector, data_dict):
    pred = detector(data_dict, inference=True)
    cls = pred["cls"].float()
    return (cls[:, 1] - cls[:, 0]).sum()


def gradcam(detector, data_dict):
    """``(maps (N, h, w) in [0, 1], method)``; see the module docstring."""
    image = data_dict["image"]
    module = _tap(detector)
    if module is not None:
        store = {}

        def hook(_m, _inp, out):
            out = out[0] if isinstance(out, (tuple, list)) else out
            out.retain_grad()
            store["act"] = out

        handle = module.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                detector.zero_grad(set_to_none=True)
                score = _score(detector, {**data_dict, "image": image.detach()})
                if "act" in store and store["act"].requires_grad:
                    score.backward()
        finally:
            handle.remove()
        act = store.get("act")
        if act is not None and act.grad is not None:
            a, g = _as_grid(act.detach().float()), _as_grid(act.grad.float())
            if a is not None and g is not None:
                cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))
                detector.zero_grad(set_to_none=True)
                return _normalize(cam), "feature"
        logger.info("Grad-CAM: the tapped features of %s got no gradient; using input gradients",
                    type(detector).__name__)
    x = image.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        detector.zero_grad(set_to_none=True)
        _score(detector, {**data_dict, "image": x}).backward()
    sal = _frames(x.grad).abs().sum(dim=1, keepdim=True)
    sal = F.avg_pool2d(sal, 9, stride=1, padding=4)[:, 0]
    detector.zero_grad(set_to_none=True)
    return _normalize(sal), "input"


def _vit_blocks(detector):
    """The detector's declared ViT attention blocks (capability ``attention_blocks``; empty if none)."""
    from ..detectors.base import capability

    blocks, batch_first = capability(detector, "attention_blocks")
    if not blocks or not hasattr(blocks[0], "attn"):
        return [], True
    return list(blocks), batch_first


def _attention_weights(attn, x):
    """Head-averaged softmax attention (N, L, L) of an nn.MultiheadAttention on its input x (N, L, D)."""
    d = x.shape[-1]
    h = attn.num_heads
    q, k, _ = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    n, length = x.shape[:2]
    q = q.reshape(n, length, h, d // h).transpose(1, 2)
    k = k.reshape(n, length, h, d // h).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-1, -2) / (d // h) ** 0.5, dim=-1)
    return w.mean(dim=1)


@torch.no_grad()
def attention_rollout(detector, data_dict):
    """(N, g, g) in [0, 1], or None when the detector has no open_clip ViT tower."""
    blocks, batch_first = _vit_blocks(detector)
    if not blocks:
        return None
    inputs = []

    def pre_hook(_m, args):
        x = args[0]
        inputs.append(x if batch_first else x.transpose(0, 1))

    handles = [b.attn.register_forward_pre_hook(pre_hook) for b in blocks]
    try:
        detector(data_dict, inference=True)
    finally:
        for h in handles:
            h.remove()
    inputs = inputs[: len(blocks)]  # the tower's blocks in order (a branch reusing attn modules adds more)
    rollout = None
    for x, block in zip(inputs, blocks):
        w = _attention_weights(block.attn, x.float())
        eye = torch.eye(w.shape[-1], device=w.device)
        a = w + eye
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    cls_row = rollout[:, 0, 1:]
    g = int(round(cls_row.shape[-1] ** 0.5))
    if g * g != cls_row.shape[-1]:
        return None
    return _normalize(cls_row.reshape(-1, g, g))


def explain(detector, data_dict):
    """Grad-CAM (and attention rollout for ViT towers) of every image or frame; see the module docstring."""
    detector.eval()
    cam, method = gradcam(detector, data_dict)
    att = attention_rollout(detector, data_dict)
    return {"gradcam": cam.detach(), "gradcam_method": method, "attention": None if att is None else att.detach()}


# ---- videos and frame folders: one strip per clip ------------------------------------------------------

FRAME_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
STRIP_PANEL = 112


def frame_files(folder, n):
    """``n`` frame files of ``folder`` spread evenly, in frame order (DeepfakeBench's integer names)."""
    import os

    from ..data.deepfakebench_json import frame_order
    from ..errors import DataError

    files = sorted((os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(FRAME_EXTS)),
                   key=frame_order)
    if not files:
        raise DataError(f"{folder}: no frames ({', '.join(FRAME_EXTS)} files) in this folder")
    if len(files) <= n:
        return files
    step = (len(files) - 1) / (n - 1) if n > 1 else 0
    return [files[int(round(i * step))] for i in range(n)]


def clip_input(detector, config, frames_rgb):
    """The data_dict of one video: (1, T, 3, H, W) for a clip detector, (T, 3, H, W) frames otherwise."""
    from ..config import RunConfig
    from ..data.transforms import resize_image, to_tensor
    from ..detectors import capability

    config = RunConfig.of(config)
    x = torch.stack([to_tensor(resize_image(f, config.resolution), *config.normalisation()) for f in frames_rgb])
    return {"image": x[None] if capability(detector, "input_kind") == "clip" else x}


def overlay(rgb, prob, alpha=0.45):
    """Blend a JET heat map of ``prob`` (H, W in [0,1]) over ``rgb`` (H, W, 3 uint8); returns BGR."""
    import cv2
    import numpy as np

    heat = cv2.applyColorMap((prob * 255).astype(np.uint8), cv2.COLORMAP_JET)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(bgr, 1 - alpha, heat, alpha, 0)


def strip_image(frames_rgb, maps, panel=STRIP_PANEL):
    """RGB uint8 strip: the frames in a row, below each its Grad-CAM overlay (and attention rollout)."""
    import cv2
    import numpy as np

    rows = [[cv2.resize(f, (panel, panel), interpolation=cv2.INTER_AREA) for f in frames_rgb]]
    for key in ("gradcam", "attention"):
        m = maps.get(key)
        if m is None:
            continue
        m = F.interpolate(m[:, None].float(), size=(panel, panel), mode="bilinear", align_corners=False)[:, 0]
        m = m.clamp(0, 1).cpu().numpy()
        rows.append([cv2.cvtColor(overlay(f, m[i]), cv2.COLOR_BGR2RGB) for i, f in enumerate(rows[0])])
    gap = 3
    out = np.full((len(rows) * (panel + gap) - gap, len(rows[0]) * (panel + gap) - gap, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            out[r * (panel + gap): r * (panel + gap) + panel, c * (panel + gap): c * (panel + gap) + panel] = img
    return out


def explain_frames(detector, config, frame_paths):
    """``(p(fake) of the video, strip RGB uint8, maps)`` for the frames ``frame_paths`` of one video."""
    from ..data.images import read_image

    frames = [read_image(p) for p in frame_paths]
    data = clip_input(detector, config, frames)
    device = next((p.device for p in detector.parameters()), torch.device("cpu"))
    data = {"image": data["image"].to(device)}
    with torch.inference_mode():
        prob = float(detector(data, inference=True)["prob"].float().mean())
    maps = explain(detector, data)
    return prob, strip_image(frames, maps), maps


__all__ = ["explain", "gradcam", "attention_rollout", "frame_files", "strip_image", "explain_frames"]
