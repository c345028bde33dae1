import shutil

import pytest
import torch

from declip_plugin import build_detector
from declip_plugin.checkpoints import read_detector_checkpoint
from declip_plugin.detectors.base import save_detector_checkpoint
from declip_plugin.errors import CheckpointError
from tests.conftest import TINY_RN, TINY_VIT, assert_one_line, data_args, run_cli, tiny_config

X = {"image": torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))}


def outputs(det):
    det.eval()
    with torch.no_grad():
        return det(X)["mask"]


def perturb_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.05)


def official_state(det, with_backbone=True):
    """The official release's checkpoint layout, built from our detector's tensors."""
    model = {}
    for k, v in det.decoder.state_dict().items():
        model[("fc." + k[len("layers."):]) if k.startswith("layers.") else k] = v.clone()
    if with_backbone:
        for k, v in det.backbone.visual.state_dict().items():
            model["model.visual." + k] = v.clone()
        dropped = len(det.backbone.visual.transformer.resblocks)  # a block after the tap, as the full model has
        model[f"model.visual.transformer.resblocks.{dropped}.ln_1.weight"] = torch.ones(det.backbone.out_channels)
        model["model.token_embedding.weight"] = torch.zeros(10, 8)  # the text tower rides along
    return {"model": model, "optimizer": {}, "total_steps": 10, "feature_layer": f"layer{det.backbone.layer}",
            "decoder_type": det.cfg.decoder_type}


@pytest.mark.parametrize("decoder", ["conv-4", "attention"])
def test_save_then_load_gives_identical_outputs(tmp_path, decoder):
    det = build_detector(tiny_config(decoder_type=decoder))
    perturb_(det.decoder)
    path = save_detector_checkpoint(tmp_path / "ckpt.pth", det)
    assert not list(tmp_path.glob(".tmp-*"))  # atomic write leaves no temporary file
    torch.manual_seed(123)  # a different random backbone: the checkpoint must bring its own
    again = build_detector(tiny_config(decoder_type=decoder), weights_path=path)
    torch.testing.assert_close(outputs(again), outputs(det), rtol=0, atol=0)


def test_official_checkpoint_with_backbone_loads_and_reproduces(tmp_path):
    cfg = tiny_config(decoder_type="conv-4", feature_layer="layer0")  # block 1 is cut off but in the file
    det = build_detector(cfg)
    perturb_(det.decoder)
    torch.save(official_state(det), tmp_path / "official.pth")
    torch.manual_seed(99)
    again = build_detector(cfg, weights_path=tmp_path / "official.pth")
    assert read_detector_checkpoint(tmp_path / "official.pth").format == "official"
    torch.testing.assert_close(outputs(again), outputs(det), rtol=0, atol=0)


def test_official_fusion_checkpoint_carries_only_the_decoder(tmp_path):
    cfg = tiny_config(backbone=f"{TINY_VIT},{TINY_RN}", feature_layer="layer1", decoder_type="conv-4")
    det = build_detector(cfg)
    perturb_(det.decoder)
    torch.save(official_state(det, with_backbone=False), tmp_path / "fusion.pth")
    towers = {}  # the 'pretrained' towers, as OpenAI-format files
    for name, tower in ((TINY_VIT, det.backbone.vit), (TINY_RN, det.backbone.rn)):
        towers[name] = str(tmp_path / f"{name}.pt")
        torch.save({"visual." + k: v for k, v in tower.visual.state_dict().items()}, towers[name])
    again = build_detector(dict(cfg, pretrained=towers), weights_path=tmp_path / "fusion.pth")
    torch.testing.assert_close(outputs(again), outputs(det), rtol=0, atol=0)
    # the same file with random towers would run a random backbone: refused, naming the file
    with pytest.raises(CheckpointError, match="fusion.pth holds no backbone weights"):
        build_detector(cfg, weights_path=tmp_path / "fusion.pth")


@pytest.mark.parametrize("change,match", [("drop", "decoder conv-4 .* 1 missing key"),
                                          ("extra", "decoder conv-4 .* 1 unexpected key")])
def test_official_checkpoint_with_missing_or_extra_decoder_key_is_rejected(tmp_path, change, match):
    det = build_detector(tiny_config(decoder_type="conv-4"))
    state = official_state(det)
    if change == "drop":
        del state["model"]["fc.1.running_mean"]
    else:
        state["model"]["fc.99.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=match) as info:
        build_detector(tiny_config(decoder_type="conv-4"), weights_path=tmp_path / "bad.pth")
    assert "fc.1.running_mean" in str(info.value).replace("layers.", "fc.") or "fc.99" in str(info.value).replace(
        "layers.", "fc.")


def test_backbone_of_another_architecture_is_rejected(tmp_path):
    det = build_detector(tiny_config(decoder_type="linear"))
    state = official_state(det)
    state["model"]["model.visual.conv1.weight"] = torch.zeros(64, 3, 32, 32)  # another patch size
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="shape mismatch.*conv1.weight"):
        build_detector(tiny_config(decoder_type="linear"), weights_path=tmp_path / "other.pth")
    del state["model"]["model.visual.ln_pre.weight"]
    state["model"]["model.visual.conv1.weight"] = det.backbone.visual.conv1.weight.detach().clone()
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing key.*ln_pre.weight"):
        build_detector(tiny_config(decoder_type="linear"), weights_path=tmp_path / "partial.pth")


def test_checkpoint_of_other_decoder_or_layer_names_the_setting(tmp_path):
    det = build_detector(tiny_config(decoder_type="linear"))
    state = official_state(det)
    state["model"] = {k: v for k, v in state["model"].items() if "resblocks.2" not in k}
    state["feature_layer"] = "layer0"
    torch.save(state, tmp_path / "l0.pth")
    with pytest.raises(CheckpointError, match="set feature_layer: layer0"):
        build_detector(tiny_config(decoder_type="linear"), weights_path=tmp_path / "l0.pth")


class Arbitrary:
    """Any class: unpickling it would run code from the file."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": {"fc.0.weight": torch.zeros(1)}, "extra": Arbitrary()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="arbitrary pickled objects"):
        build_detector(tiny_config(), weights_path=tmp_path / "evil.pth")


def test_pretrained_file_in_openai_format_loads_offline(tmp_path):
    import open_clip

    full = open_clip.create_model(TINY_VIT, pretrained=None)
    sd = {k: v.half() for k, v in full.state_dict().items()}  # OpenAI files are fp16
    torch.save(sd, tmp_path / "tiny.pt")
    det = build_detector(tiny_config(pretrained=str(tmp_path / "tiny.pt"), decoder_type="linear"))
    torch.testing.assert_close(det.backbone.visual.conv1.weight, full.visual.conv1.weight.half().float())
    assert det.backbone.pretrained == str(tmp_path / "tiny.pt")


def test_pretrained_torchscript_archive_loads(tmp_path):
    import open_clip

    full = open_clip.create_model(TINY_VIT, pretrained=None).eval()
    # OpenAI's archives hold the CLIP modules under their usual names ('visual.*')
    scripted = torch.jit.script(_Holder(full.visual))
    scripted.save(str(tmp_path / "tiny_jit.pt"))
    det = build_detector(tiny_config(pretrained=str(tmp_path / "tiny_jit.pt"), decoder_type="linear"))
    torch.testing.assert_close(det.backbone.visual.conv1.weight, full.visual.conv1.weight)


class _Holder(torch.nn.Module):
    def __init__(self, visual):
        super().__init__()
        self.visual = torch.jit.trace(visual, torch.randn(1, 3, 224, 224), check_trace=False)

    def forward(self, x):
        return self.visual(x)


def test_missing_openai_weights_fail_fast_with_where_to_put_them(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("DECLIP_CLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("DECLIP_OFFLINE", "1")
    t = time.monotonic()
    with pytest.raises(CheckpointError, match=r"not on this machine.*put it at .*cache"):
        build_detector(tiny_config(backbone="RN50", feature_layer="layer1", pretrained="openai"))
    assert time.monotonic() - t < 30


# --- the commands name a checkpoint they cannot use -------------------------------------------------------
def test_checkpoint_without_the_backbone_it_needs(world, tmp_path, capsys):
    code, _, err = run_cli(["test", "--detector_path", world / "tiny.yaml", "--weights_path",
                            world / "decoder_only.pth", "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "decoder_only.pth", "holds no backbone weights")
    assert not (tmp_path / "logs").exists()


def test_corrupt_checkpoint_is_called_corrupt(world, tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes((world / "tiny.pth").read_bytes()[:1000])
    code, _, err = run_cli(["test", "--detector_path", world / "tiny.yaml", "--weights_path", bad,
                            "--log_dir", tmp_path / "logs", *data_args(world)], capsys)
    assert code == 2
    assert_one_line(err, "bad.pth", "is corrupt")


def test_checkpoint_that_runs_code_is_refused(world, tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"model": {}, "hook": shutil.rmtree}, evil)
    code, _, err = run_cli(["predict", next((world / "data").rglob("*.png")), "--weights_path", evil,
                            "--out", tmp_path / "p"], capsys)
    assert code == 2
    assert_one_line(err, "evil.pth", "arbitrary pickled objects")
