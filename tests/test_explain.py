"""Grad-CAM and attention rollout maps (engine/explain.py) for detectors without a decoder."""
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
