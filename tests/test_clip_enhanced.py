"""clip_enhanced: LayerNorm tuning of a CLIP image tower plus a head (DeepFakesDetection's detector)."""
import time

import open_clip
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from declip_plugin import build_detector
from declip_plugin.checkpoints import DetectorCheckpoint, read_detector_checkpoint
from declip_plugin.detectors.base import save_detector_checkpoint
from declip_plugin.config import load_detector_config
from declip_plugin.errors import CheckpointError, ConfigError
from tests.conftest import TINY_VIT


def ce_config(**overrides):
    cfg = {"model_name": "clip_enhanced", "backbone": TINY_VIT, "pretrained": "none", "mlp_layer": 1}
    cfg.update(overrides)
    return cfg


def fixed_batch(b=4, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randn(b, 3, 224, 224, generator=g), "label": torch.tensor([0, 1] * (b // 2))}


def tiny_clip_file(path, seed=7):
    """An OpenAI-format CLIP file (visual.* keys, projection included) of the tiny ViT tower."""
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_VIT, pretrained=None)
    torch.save({k: v for k, v in model.state_dict().items()}, path)
    return model


@pytest.mark.parametrize("mlp_layer,seed_count", [(1, 41474), (2, 434690)])
def test_exactly_the_layernorms_and_the_head_train_on_vit_b16(mlp_layer, seed_count):
    det = build_detector(ce_config(backbone="ViT-B/16", mlp_layer=mlp_layer))
    norms = [m for m in det.backbone.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 + 2 * 12  # ln_pre, ln_post, ln_1 / ln_2 of each of the 12 blocks
    expected = {f"backbone.{n}.{p}" for n, m in det.backbone.named_modules() if isinstance(m, nn.LayerNorm)
                for p in ("weight", "bias")}
    expected |= {f"head.{n}" for n, _ in det.head.named_parameters()}
    trainable = {n for n, p in det.named_parameters() if p.requires_grad}
    assert trainable == expected
    count = sum(m.weight.numel() + m.bias.numel() for m in norms) + sum(p.numel() for p in det.head.parameters())
    assert count == seed_count  # the counts DeepFakesDetection's clip_enhanced logs
    summary = det.parameter_summary()
    assert summary["trainable"] == count
    # the tower without CLIP's projection: the feature is the 768-wide pooled CLS
    assert "backbone.proj" not in det.state_dict()
    assert summary["total"] == count + sum(p.numel() for n, p in det.named_parameters() if n not in expected)
    assert det.head(torch.zeros(1, 768)).shape == (1, 2)


def test_the_feature_is_the_pooled_cls_before_the_projection(tmp_path):
    full = tiny_clip_file(tmp_path / "tiny.pt")
    det = build_detector(ce_config(pretrained=str(tmp_path / "tiny.pt")))
    x = fixed_batch(2)["image"]
    with torch.no_grad():
        pooled = det.features({"image": x})
        torch.testing.assert_close(pooled @ full.visual.proj, full.visual(x))
        pred = det({"image": x})
    torch.testing.assert_close(pred["feat"], F.normalize(pooled, dim=1))
    torch.testing.assert_close(pred["prob"], torch.softmax(pred["cls"], 1)[:, 1])


def test_frozen_weights_are_unchanged_after_optimizer_steps():
    det = build_detector(ce_config())
    before = {n: p.detach().clone() for n, p in det.named_parameters()}
    # over every parameter, as DeepfakeBench's train.py builds its optimizer, with weight decay
    opt = torch.optim.AdamW(det.parameters(), lr=1e-2, weight_decay=0.1)
    batch = fixed_batch()
    for _ in range(3):
        opt.zero_grad()
        det.get_losses(batch, det(batch))["overall"].backward()
        opt.step()
    trainable = set(det.trainable_keys())
    for n, p in det.named_parameters():
        if n in trainable:
            assert not torch.equal(p, before[n]), f"{n} did not train"
        else:
            assert torch.equal(p, before[n]), f"frozen {n} changed"


def test_loss_drops_on_a_fixed_batch():
    det = build_detector(ce_config())
    batch = fixed_batch()
    opt = torch.optim.Adam([p for p in det.parameters() if p.requires_grad], lr=5e-2)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = det.get_losses(batch, det(batch))["overall"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    metrics = det.get_train_metrics(batch, det(batch))
    assert set(metrics) == {"acc", "auc", "eer", "ap"} and metrics["auc"] == 1.0


def _train_a_little(det, steps=3):
    batch = fixed_batch()
    opt = torch.optim.Adam([p for p in det.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        det.get_losses(batch, det(batch))["overall"].backward()
        opt.step()
    return det.eval()


@pytest.mark.parametrize("mlp_layer", [1, 2])
def test_save_then_load_gives_identical_outputs(tmp_path, mlp_layer):
    det = _train_a_little(build_detector(ce_config(mlp_layer=mlp_layer)))
    path = save_detector_checkpoint(tmp_path / "ckpt.pth", det)
    x = fixed_batch(4, seed=9)
    with torch.no_grad():
        want = det(x)
    torch.manual_seed(123)  # a different random init: everything must come from the file
    # the file carries the tower, so a pretrained file named by the config is never read
    config = ce_config(mlp_layer=mlp_layer, pretrained=str(tmp_path / "not-there.pt"))
    back = build_detector(config, weights_path=path).eval()
    with torch.no_grad():
        got = back(x)
    for k in ("cls", "prob", "feat"):
        assert torch.equal(got[k], want[k]), k


def test_pretrained_openai_saves_only_the_trainable_part(tmp_path, monkeypatch):
    import declip_plugin.detectors.clip_enhanced as ce

    full = tiny_clip_file(tmp_path / "openai-tiny.pt")
    monkeypatch.setattr(ce, "resolve_openai_weights", lambda oc_name, name: str(tmp_path / "openai-tiny.pt"))
    det = build_detector(ce_config(pretrained="openai"))
    assert torch.equal(det.backbone.conv1.weight, full.visual.conv1.weight)
    det = _train_a_little(det)
    state = det.state_to_save()
    assert set(state) == set(det.trainable_keys())
    ckpt = DetectorCheckpoint("in-memory", "declip-plugin", dict(state), det.describe())
    x = fixed_batch(4, seed=9)
    with torch.no_grad():
        want = det(x)
    torch.manual_seed(123)
    back = build_detector(ce_config(pretrained="openai"), weights_path=ckpt).eval()
    with torch.no_grad():
        assert torch.equal(back(x)["cls"], want["cls"])
    # the same file cannot rebuild a model on random weights: the frozen part is missing
    with pytest.raises(CheckpointError, match="missing key"):
        build_detector(ce_config(), weights_path=DetectorCheckpoint("in-memory", "plain", dict(state), {}))


def test_a_missing_pretrained_file_fails_fast_naming_it(tmp_path, monkeypatch):
    missing = tmp_path / "ViT-B-16-missing.pt"
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match="ViT-B-16-missing.pt"):
        build_detector(ce_config(backbone="ViT-B/16", pretrained=str(missing)))
    monkeypatch.setenv("DECLIP_CLIP_CACHE", str(tmp_path))
    monkeypatch.setenv("DECLIP_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="ViT-B-16.pt"):
        build_detector(ce_config(backbone="ViT-B/16", pretrained="openai"))
    assert time.perf_counter() - t0 < 5.0  # before the tower is built


def test_mlp_layer_2_is_linear_relu_linear():
    det = build_detector(ce_config(mlp_layer=2))
    layers = list(det.head)
    assert [type(m) for m in layers] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (64, 512, 2)
    pred = det(fixed_batch(2))
    assert pred["cls"].shape == (2, 2) and pred["prob"].shape == (2,)
    torch.testing.assert_close(pred["feat"].norm(dim=1), torch.ones(2))


def test_bad_keys_are_named():
    with pytest.raises(ConfigError, match="mlp_layer"):
        build_detector(ce_config(mlp_layer=3))
    with pytest.raises(ConfigError, match="not an open_clip ViT"):
        build_detector(ce_config(backbone="declip-tiny-rn"))
    with pytest.raises(ConfigError, match="loss_func"):
        build_detector(ce_config(loss_func="bce"))


@pytest.mark.parametrize("name,backbone,mlp", [("clip_enhanced", "ViT-B/16", 1),
                                               ("clip_enhanced_vitl14", "ViT-L/14", 1),
                                               ("clip_enhanced_demo", TINY_VIT, 2)])
def test_bundled_configs_load(name, backbone, mlp):
    cfg = load_detector_config(name)
    assert cfg["model_name"] == "clip_enhanced" and cfg["backbone"] == backbone and cfg["mlp_layer"] == mlp
    assert cfg["lr_scheduler"] == "cosine" and cfg["lr_T_max"] == cfg["nEpochs"]


def test_a_checkpoint_written_by_the_engine_format_reads_back(tmp_path):
    det = build_detector(ce_config())
    path = save_detector_checkpoint(tmp_path / "c.pth", det)
    ckpt = read_detector_checkpoint(path)
    assert ckpt.meta["model_name"] == "clip_enhanced" and ckpt.meta["mlp_layer"] == 1
    with pytest.raises(CheckpointError, match="mlp_layer"):
        build_detector(ce_config(mlp_layer=2), weights_path=path)
