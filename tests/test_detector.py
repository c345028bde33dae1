import pytest
import torch

from declip_plugin import build_detector
from declip_plugin.errors import ConfigError
from tests.conftest import TINY_RN, TINY_VIT, tiny_config

BACKBONES = [(TINY_VIT, "layer1"), (TINY_RN, "layer3"), (TINY_RN, "layer1"), (f"{TINY_VIT},{TINY_RN}", "layer0"),
             ("xceptionnet", None)]
DECODERS = ["linear", "attention", "conv-4", "conv-12", "conv-20"]


def batch(b=2, with_mask=True):
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(b, 256, 256, 1)
    mask[:, 64:160, 80:200] = 1.0  # DeepfakeBench's channels-last mask layout
    return {"image": torch.randn(b, 3, 224, 224, generator=g), "label": torch.tensor([1, 0] * (b // 2) or [1]),
            "mask": mask if with_mask else None, "landmark": None}


@pytest.mark.parametrize("backbone,layer", BACKBONES)
def test_every_backbone_with_every_decoder_gives_a_256_mask(backbone, layer):
    for decoder in DECODERS:
        det = build_detector(tiny_config(backbone=backbone, feature_layer=layer, decoder_type=decoder))
        det.eval()
        with torch.no_grad():
            pred = det(batch(1))
        assert pred["mask"].shape == (1, 1, 256, 256), (backbone, decoder)
        assert pred["cls"].shape == (1, 2) and pred["prob"].shape == (1,)
        assert pred["feat"].shape[0] == 1 and pred["feat"].dim() == 2
        # softmax(cls)[:, 1] is the probability of fake, as DeepfakeBench's metric code reads it
        torch.testing.assert_close(torch.softmax(pred["cls"], 1)[:, 1], pred["prob"])


def test_vit_l14_layer20_conv20_has_the_official_shape_and_key_layout():
    det = build_detector(tiny_config(backbone="CLIP:ViT-L/14", feature_layer="layer20", decoder_type="conv-20"))
    assert det.backbone.out_channels == 1024 and det.backbone.grid == 16
    assert len(det.backbone.visual.transformer.resblocks) == 21  # stops at the tapped block
    keys = det.decoder.state_dict()
    assert tuple(keys["layers.0.weight"].shape) == (512, 1024, 5, 5)
    assert tuple(keys["layers.64.weight"].shape) == (1, 64, 5, 5)  # official fc.64 (no final resize for ViT)
    with torch.no_grad():
        feats = det.backbone(torch.randn(1, 3, 224, 224))
        assert feats.shape == (1, 257, 1024)
        assert det.decoder(feats).shape == (1, 1, 256, 256)


def test_backbone_stops_at_the_tapped_layer_and_matches_the_full_tower():
    import open_clip

    det = build_detector(tiny_config(feature_layer="layer0"))
    full = open_clip.create_model(TINY_VIT, pretrained=None).visual
    state = {k: v for k, v in full.state_dict().items()}
    det.backbone.load_openai_state_dict({"visual." + k: v for k, v in state.items()}, source="test")
    x = torch.randn(2, 3, 224, 224)
    full.eval()
    with torch.no_grad():
        inter = full.forward_intermediates(x, indices=[0], intermediates_only=True, output_fmt="NLC",
                                           output_extra_tokens=True)
        ours = det.backbone(x)
    ref = torch.cat([inter["image_intermediates_prefix"][0], inter["image_intermediates"][0]], dim=1)
    torch.testing.assert_close(ours, ref)


def test_only_decoder_parameters_train_and_the_backbone_stays_unchanged():
    det = build_detector(tiny_config(backbone=f"{TINY_VIT},{TINY_RN}", feature_layer="layer0", decoder_type="linear"))
    trainable = {n for n, p in det.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("decoder.") for n in trainable)
    before = {k: v.clone() for k, v in det.backbone.state_dict().items()}
    det.train()
    assert not det.backbone.training and det.decoder.training
    opt = torch.optim.AdamW([p for p in det.parameters() if p.requires_grad], lr=1e-3)
    data = batch()
    for _ in range(3):
        loss = det.get_losses(data, det(data))["overall"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in det.backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("decoder,fully_supervised", [("conv-4", True), ("linear", False), ("attention", True)])
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(decoder, fully_supervised):
    det = build_detector(tiny_config(decoder_type=decoder, fully_supervised=fully_supervised))
    det.train()
    opt = torch.optim.AdamW([p for p in det.parameters() if p.requires_grad], lr=5e-3)
    data = batch()
    losses = []
    for _ in range(6):
        loss = det.get_losses(data, det(data))["overall"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.02, losses


def test_localization_loss_resizes_the_prediction_to_the_ground_truth():
    det = build_detector(tiny_config(decoder_type="linear"))
    data = batch()
    pred = det(data)
    small = dict(data, mask=torch.nn.functional.interpolate(data["mask"].permute(0, 3, 1, 2), size=(64, 64)))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.nn.functional.interpolate(pred["mask"], size=(64, 64), mode="bilinear", align_corners=False),
        small["mask"])
    torch.testing.assert_close(det.get_losses(small, pred)["overall"], expected)


def test_detection_mode_scores_the_mean_logit_and_localization_needs_masks():
    det = build_detector(tiny_config(fully_supervised=False))
    data = batch(with_mask=False)
    pred = det(data)
    z = pred["mask"].flatten(1).mean(1)
    torch.testing.assert_close(pred["prob"], torch.sigmoid(z))
    expected = torch.nn.functional.binary_cross_entropy_with_logits(z, data["label"].float())
    torch.testing.assert_close(det.get_losses(data, pred)["overall"], expected)
    loc = build_detector(tiny_config(fully_supervised=True))
    with pytest.raises(ConfigError, match="needs ground-truth masks"):
        loc.get_losses(data, loc(data))


def test_train_metrics_have_deepfakebench_keys():
    det = build_detector(tiny_config())
    data = batch(4)
    m = det.get_train_metrics(data, det(data))
    assert {"acc", "auc", "eer", "ap", "iou"} <= set(m)
    assert 0.0 <= m["acc"] <= 1.0 and 0.0 <= m["iou"] <= 100.0


def test_official_names_and_arch_alias():
    det = build_detector({"model_name": "declip", "arch": f"CLIP:{TINY_VIT}", "pretrained": "none",
                          "feature_layer": "layer1", "decoder_type": "linear"})
    assert det.cfg.backbone == TINY_VIT


@pytest.mark.parametrize("key,value,match", [("feature_layer", "layer9", "layer0 ... layer1"),
                                             ("decoder_type", "conv-5", "decoder_type.*allowed: linear, attention, conv-4"),
                                             ("backbone", "ViT-Q/99", "unknown backbone")])
def test_bad_detector_settings_are_clear_errors(key, value, match):
    with pytest.raises(ConfigError, match=match):
        build_detector(tiny_config(**{key: value}))


def test_unknown_model_name_lists_declip():
    from declip_plugin.errors import RegistryError

    with pytest.raises(RegistryError, match=r"available: .*declip") as info:
        build_detector(tiny_config(model_name="declp"))
    assert "did you mean 'declip'" in str(info.value)


def test_unfrozen_xception_trains_its_backbone():
    det = build_detector(tiny_config(backbone="xceptionnet", feature_layer=None, fix_backbone=False))
    assert any(p.requires_grad for p in det.backbone.parameters())
    det.train()
    assert det.backbone.training


LAYOUTS = {
    "NCHW": lambda m: m[:, None],
    "NHW": lambda m: m,
    "NHWC (DeepfakeBench rgb)": lambda m: m[..., None],
    "NHW13 (DeepfakeBench LMDB colour)": lambda m: m[..., None, None].expand(2, 8, 8, 1, 3),
    "NHW3": lambda m: m[..., None].expand(2, 8, 8, 3),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_ground_truth_mask_layouts_of_every_host_are_accepted(layout):
    from declip_plugin.detectors.declip import mask_to_nchw

    base = (torch.arange(128).reshape(2, 8, 8) % 3 == 0).float()
    torch.testing.assert_close(mask_to_nchw(LAYOUTS[layout](base)), base[:, None])
