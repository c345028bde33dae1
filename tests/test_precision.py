"""Precision that fits the device, decided at one place (engine.runtime), with the device's
capabilities faked there; the gradient scaler and the skipped inf/NaN steps; DeepfakeBench's ddp flag."""
import json
import logging
import math

import pytest
import torch

from declip_plugin.cli import main as cli_main
from declip_plugin.data.demo import make_demo_data
from declip_plugin.engine import runtime
from declip_plugin.engine.trainer import optimizer_step
from declip_plugin.errors import ConfigError
from tests.conftest import tiny_config

CUDA = torch.device("cuda", 0)
T4 = {"name": "Tesla T4 (compute capability 7.5)", "bf16": False}
H100 = {"name": "NVIDIA H100 80GB HBM3 (compute capability 9.0)", "bf16": True}


@pytest.fixture
def gpu(monkeypatch):
    """Fake the one place the device is asked; counts the questions."""
    asked = []

    def use(caps):
        def device_capabilities(device):
            asked.append(device)
            return dict(caps)

        monkeypatch.setattr(runtime, "device_capabilities", device_capabilities)
        return asked

    return use


@pytest.mark.parametrize("requested", ["auto", "bf16"])
def test_bf16_where_the_gpu_has_it(gpu, requested):
    asked = gpu(H100)
    p = runtime.decide_precision(requested, CUDA)
    assert (p.name, p.dtype, p.uses_scaler, p.make_scaler()) == ("bf16", torch.bfloat16, False, None)
    assert asked == [CUDA] and "H100" in p.reason


def test_auto_on_a_gpu_without_bf16_is_fp16_with_a_scaler(gpu):
    gpu(T4)
    p = runtime.decide_precision("auto", CUDA)
    assert (p.name, p.dtype, p.uses_scaler) == ("fp16", torch.float16, True)
    assert p.describe() == {"requested": "auto", "used": "fp16", "scaler": True,
                            "reason": "Tesla T4 (compute capability 7.5) has no native bf16: fp16 autocast with a "
                                      "gradient scaler"}


def test_explicit_bf16_on_a_gpu_without_it_is_refused_in_one_line(gpu):
    gpu(T4)
    with pytest.raises(ConfigError) as err:
        runtime.decide_precision("bf16", CUDA)
    msg = str(err.value)
    assert "\n" not in msg and "Tesla T4" in msg and "precision: auto" in msg and "fp32" in msg


def test_fp16_always_has_a_scaler_and_fp32_none(gpu):
    asked = gpu(H100)
    fp16, fp32 = runtime.decide_precision("fp16", CUDA), runtime.decide_precision("fp32", CUDA)
    assert (fp16.name, fp16.uses_scaler) == ("fp16", True)
    assert (fp32.name, fp32.dtype, fp32.uses_scaler) == ("fp32", None, False)
    assert asked == []  # nothing to ask the device for an explicit fp16 / fp32


@pytest.mark.parametrize("requested", ["auto", "bf16", "fp16", "fp32", None])
def test_the_cpu_runs_fp32_without_asking(gpu, requested):
    asked = gpu(H100)
    p = runtime.decide_precision(requested, torch.device("cpu"))
    assert (p.name, p.dtype, p.make_scaler()) == ("fp32", None, None) and asked == []
    x = torch.randn(2, 2)
    with runtime.autocast(torch.device("cpu"), requested or "auto"):
        assert (x @ x).dtype == torch.float32


def test_unknown_precision_names_the_choices():
    with pytest.raises(ConfigError, match=r"precision 'half': use auto, bf16, fp16, fp32"):
        runtime.decide_precision("half", torch.device("cpu"))


def test_the_decision_is_stated_in_one_log_line(gpu, caplog):
    gpu(T4)
    caplog.set_level(logging.INFO, logger="declip_plugin.engine.runtime")
    runtime.resolve_precision({"precision": "auto"}, CUDA)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert lines == ["precision: fp16 (requested auto): Tesla T4 (compute capability 7.5) has no native bf16: "
                     "fp16 autocast with a gradient scaler"]


# --- the optimizer step -----------------------------------------------------------------------
def _model_and_opt():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    return model, opt, list(model.parameters())


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("with_scaler", [False, True])
def test_a_non_finite_step_is_skipped_and_leaves_weights_and_optimizer_alone(bad, with_scaler):
    model, opt, params = _model_and_opt()
    scaler = torch.amp.GradScaler("cpu") if with_scaler else None
    x = torch.randn(8, 4)
    assert optimizer_step(model(x).pow(2).mean(), opt, params, scaler) is True
    before = [p.detach().clone() for p in params]
    state = {k: {n: t.clone() for n, t in v.items()} for k, v in opt.state.items()}
    scale = scaler.get_scale() if scaler else None
    assert optimizer_step(model(x).pow(2).mean() * bad, opt, params, scaler) is False
    assert all(torch.equal(a, p) for a, p in zip(before, params))
    for k, v in opt.state.items():
        assert all(torch.equal(t, state[k][n]) for n, t in v.items())
    if scaler:
        assert scaler.get_scale() < scale  # the scaler backed off
    assert optimizer_step(model(x).pow(2).mean(), opt, params, scaler) is True
    assert not all(torch.equal(a, p) for a, p in zip(before, params))


# --- a training run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_demo_data(root / "demo", seed=1, size=64, n_train=8, n_val=2, n_test=2)
    return root


def _yaml(tmp_path, **extra):
    import yaml

    cfg = tiny_config(feature_layer="layer0", decoder_type="linear", train_batchSize=2, test_batchSize=2, workers=0,
                      nEpochs=2, include_real=True, train_dataset=["demo-telea"], early_stopping={"enabled": False},
                      tensorboard_masks=0, feature_cache={"enabled": False})
    cfg.update(extra)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _only_run(log_dir):
    runs = [d for d in log_dir.iterdir() if d.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16-scaler"])
def test_a_nan_loss_step_is_skipped_counted_and_kept_out_of_checkpoints(tmp_path, data_root, monkeypatch, fp16):
    """Step 2 of epoch 1 gets a NaN loss: it is skipped and counted (history, state), the epoch's
    loss stays finite and no checkpoint holds a NaN. With fp16 (faked on the CPU at the one place
    the precision is decided) the step goes through the gradient scaler, whose state is saved."""
    from declip_plugin.detectors.declip import DeCLIPDetector

    if fp16:
        monkeypatch.setattr(runtime, "decide_precision",
                            lambda requested, device: runtime.Precision("fp16", device.type, "fp16", "faked"))
    real = DeCLIPDetector.get_losses
    calls = []

    def nan_on_second(self, data_dict, pred_dict):
        out = real(self, data_dict, pred_dict)
        if self.training:
            calls.append(1)
            if len(calls) == 2:
                out["overall"] = out["overall"] * math.nan
        return out

    monkeypatch.setattr(DeCLIPDetector, "get_losses", nan_on_second)
    args = ["train", "--detector_path", str(_yaml(tmp_path)), "--data_root", str(data_root), "--device", "cpu",
            "--log_dir", str(tmp_path / "logs")]
    assert cli_main(args) == 0
    run = _only_run(tmp_path / "logs")
    state = torch.load(run / "ckpt_last.pth", weights_only=True)
    assert state["skipped_steps"] == 1 and [h["skipped_steps"] for h in state["history"]] == [1, 0]
    assert all(math.isfinite(h["train_loss"]) for h in state["history"])
    for name in ("ckpt_last.pth", "ckpt_best.pth"):
        weights = torch.load(run / name, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()), name
    assert (state["scaler"] is not None) == fp16
    if fp16:
        assert state["scaler"]["scale"] < 65536.0  # lowered by the skipped step
    used = json.loads((run / "run.json").read_text())["precision"]
    assert used["used"] == ("fp16" if fp16 else "fp32") and used["scaler"] == fp16


# --- DeepfakeBench's ddp flag ---------------------------------------------------------------------
def test_ddp_without_torchrun_is_refused_in_one_line(tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    log_dir = tmp_path / "logs"
    rc = cli_main(["train", "--detector_path", str(_yaml(tmp_path)), "--data_root", str(data_root),
                   "--device", "cpu", "--log_dir", str(log_dir), "--ddp"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("error: ddp: true (--ddp) needs one process per GPU started by torchrun: torchrun ")
    assert not log_dir.exists() or not any(log_dir.iterdir())


def test_ddp_from_the_yaml_is_refused_too_and_accepted_under_torchrun(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="torchrun"):
        runtime.check_ddp({"ddp": True})
    runtime.check_ddp({"ddp": False})
    monkeypatch.setenv("WORLD_SIZE", "2")
    runtime.check_ddp({"ddp": True})


def test_torch_distributed_launch_arguments_are_accepted():
    from declip_plugin.cli import build_parser

    args = build_parser().parse_args(["train", "--detector_path", "declip_demo", "--local-rank=1", "--ddp"])
    assert (args.local_rank, args.ddp) == (1, True)
    assert build_parser().parse_args(["train", "--detector_path", "declip_demo"]).ddp is None  # the YAML decides
