"""Grad-CAM and attention rollout maps (engine/explain.py) for detectors without a decoder."""
import json
import os

import torch

from declip_plugin.detectors import build_detector
from declip_plugin.engine.explain import attention_rollout, explain

STAN = {"model_name": "clip_stan", "backbone": "declip-tiny-vit-96", "pretrained": "none", "depth": 1,
        "resolution": 96}
TSF = {"model_name": "timesformer_effb0", "encoder": "test_efficientnet", "pretrained": "none", "resolution": 64,
       "heads": 4, "mlp_ratio": 1.0}


def test_maps_per_frame_for_clip_detectors():
    torch.manual_seed(0)
    for cfg, size, grid in ((STAN, 96, 6), (TSF, 64, 2)):
        det = build_detector(cfg)
        out = explain(det, {"image": torch.randn(2, 3, 3, size, size)})
        cam = out["gradcam"]
        assert cam.shape == (6, grid, grid) and out["gradcam_method"] == "feature"
        assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0 and float(cam.max()) == 1.0
        assert all(p.grad is None for p in det.parameters())
        if cfg is STAN:
            assert out["attention"].shape == (6, grid, grid)
        else:
            assert out["attention"] is None


def test_gradcam_finds_the_region_the_score_depends_on():
    """A detector whose fake score reads one image quadrant: Grad-CAM (input gradients) lights it up."""
    class Quadrant(torch.nn.Module):
        def forward(self, data_dict, inference=False):
            x = data_dict["image"]
            z = x[:, :, :16, 16:].pow(2).mean(dim=(1, 2, 3))
            return {"cls": torch.stack([-z, z], 1), "prob": torch.sigmoid(2 * z), "feat": z[:, None]}

    out = explain(Quadrant(), {"image": torch.randn(2, 3, 32, 32)})
    cam = out["gradcam"]
    assert out["gradcam_method"] == "input" and out["attention"] is None
    assert float(cam[:, 4:12, 20:28].mean()) > 0.5 > float(cam[:, 20:28, 4:12].mean())


def test_attention_rollout_is_uniform_for_uniform_attention():
    """With query/key projections zeroed, every attention row is uniform: the rollout's CLS row is
    the same for every patch, so the normalised map is constant (0 after min-max)."""
    det = build_detector(STAN).eval()
    for block in det.backbone.visual.transformer.resblocks:
        d = block.attn.embed_dim
        with torch.no_grad():
            block.attn.in_proj_weight[: 2 * d].zero_()
            block.attn.in_proj_bias[: 2 * d].zero_()
    att = attention_rollout(det, {"image": torch.randn(1, 2, 3, 96, 96)})
    assert att.shape == (2, 6, 6) and float(att.abs().max()) < 1e-6


def _frame_folder(root, n=10, size=48):
    import cv2
    import numpy as np

    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(n):  # integer names, listed out of order on purpose (frame order is numeric)
        cv2.imwrite(str(root / f"{t}.png"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return root


def test_predict_explain_on_a_frame_folder_writes_a_strip_per_video(tmp_path, capsys):
    """`declip predict --explain VIDEO_DIR` for a clip detector: one strip, frames over Grad-CAM and rollout."""
    import cv2

    from declip_plugin.detectors.base import save_detector_checkpoint
    from declip_plugin.cli import main
    from declip_plugin.engine.explain import STRIP_PANEL, frame_files

    folder = _frame_folder(tmp_path / "vid7")
    assert [os.path.basename(p) for p in frame_files(str(folder), 4)] == ["0.png", "3.png", "6.png", "9.png"]
    det = build_detector({**STAN, "clip_size": 4, "video_mode": True, "mean": [0.5] * 3, "std": [0.5] * 3})
    ckpt = save_detector_checkpoint(str(tmp_path / "stan.pth"), det)
    out = tmp_path / "preds"
    assert main(["predict", str(folder), "--weights_path", ckpt, "--out", str(out), "--explain", "--device", "cpu"]) == 0
    strip = cv2.imread(str(out / "vid7_strip.png"))
    gap = 3
    # 4 frames across; rows: frames, Grad-CAM, attention rollout (a ViT tower)
    assert strip.shape == (3 * STRIP_PANEL + 2 * gap, 4 * STRIP_PANEL + 3 * gap, 3)
    rec = json.loads((out / "predictions.json").read_text())["predictions"][0]
    assert rec["frames"] == 4 and rec["strip"].endswith("vid7_strip.png") and 0.0 <= rec["prob_fake"] <= 1.0
    # a single image is not a clip: one error line, exit 2 (nothing could be done), nothing written
    img = tmp_path / "one.png"
    cv2.imwrite(str(img), cv2.imread(str(folder / "0.png")))
    capsys.readouterr()
    assert main(["predict", str(img), "--weights_path", ckpt, "--out", str(tmp_path / "p2"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert line == (f"error: {img}: detector 'clip_stan' takes clips of frames; give a video file or a folder of a "
                    f"video's frames (e.g. DeepfakeBench's frames/<video>/)")
    assert not (tmp_path / "p2").exists()


def test_rollout_reaches_a_bare_image_tower_too():
    """clip_enhanced keeps open_clip's image tower itself as its backbone: rollout finds its blocks."""
    det = build_detector({"model_name": "clip_enhanced", "backbone": "declip-tiny-vit-96", "pretrained": "none",
                          "resolution": 96})
    out = explain(det, {"image": torch.randn(2, 3, 96, 96)})
    assert out["attention"] is not None and out["attention"].shape == (2, 6, 6)


def test_rollout_uses_the_declared_attention_blocks_only():
    """The engine reads the detector's ``attention_blocks()`` capability, never the tower's attributes: a
    detector that declares none gets no rollout though its backbone has ViT blocks, and a declared subset
    is what the rollout multiplies through (its first block's attention alone here)."""
    det = build_detector({"model_name": "clip_enhanced", "backbone": "declip-tiny-vit-96", "pretrained": "none",
                          "resolution": 96})
    batch = {"image": torch.randn(2, 3, 96, 96)}
    full = attention_rollout(det, batch)
    blocks, batch_first = det.attention_blocks()
    assert len(blocks) > 1
    det.attention_blocks = lambda: ([], True)
    assert attention_rollout(det, batch) is None
    det.attention_blocks = lambda: (blocks[:1], batch_first)
    first = attention_rollout(det, batch)
    assert first is not None and first.shape == full.shape and not torch.allclose(first, full)
