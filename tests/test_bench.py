"""`declip bench` (declip_plugin/bench/): structure of the results, the reference tower, the CLI."""
import json

import torch

from conftest import TINY_RN, TINY_VIT, assert_one_line, run_cli
from declip_plugin import bench
from declip_plugin.backbones import build_backbone
from declip_plugin.detectors.declip.reference import ReferenceTower

CONFIGS = {("inference", "reference"), ("inference", "optimized"), ("inference", "optimized, cached"),
           ("train", "reference"), ("train", "optimized, first epoch"), ("train", "optimized, cached")}


def test_quick_bench_on_cpu_reports_both_configurations():
    result = bench.run_bench(quick=True, device="cpu")
    rows = result["results"]
    assert {(r["mode"], r["configuration"]) for r in rows} == CONFIGS
    for r in rows:
        assert r["img_s"] > 0 and r["img_s_mean"] > 0 and len(r["batch_s"]) == result["measured_batches"]
        assert r["state_mb"] > 0
        if bench.MemoryProbe(torch.device("cpu")).available:
            assert r["peak_mem_mb"] >= r["state_mb"]
    by = {(r["mode"], r["configuration"]): r for r in rows}
    assert by[("inference", "optimized, cached")]["cache_hit_rate"] == 1.0
    assert by[("train", "optimized, cached")]["cache_hit_rate"] == 1.0
    assert by[("train", "optimized, first epoch")]["cache_hit_rate"] == 0.0
    assert by[("inference", "reference")]["precision"] == "fp32"
    assert set(result["ratios"]) >= {"inference", "inference_cached", "train_first_epoch", "train_cached"}
    assert all(v > 0 for v in result["ratios"].values())
    assert result["reference_check_max_abs_diff"] < 1e-5  # the reference computes the same features
    d = result["detector"]
    assert (d["backbone"], d["feature_layer"], d["decoder_type"]) == (TINY_VIT, "layer1", "conv-4")
    assert result["torch"] == torch.__version__ and result["open_clip"] and result["device"].startswith("CPU")
    assert result["batch_size"] == 1 and result["n_images"] == 2
    table = result["table"]
    for word in ("reference", "optimized, cached", "x ref", "img/s", "peak MB", "command: declip bench"):
        assert word in table


def test_components_mode():
    # the linear decoder keeps it fast; the conv decoders go through the same code
    result = bench.run_bench(quick=True, device="cpu", modes="components", overrides={"decoder_type": "linear"})
    names = [r["configuration"] for r in result["results"]]
    assert names == ["tower, all 2 blocks", "tower, stop at layer1", "decoder fwd, engine", "decoder fwd, official",
                     "decoder step, engine", "decoder step, official"]
    assert all(r["mode"] == "components" and r["img_s"] > 0 for r in result["results"])
    assert result["ratios"] == {} and "decoder step, official" in result["table"]


def test_reference_tower_runs_every_block_and_matches_the_tap():
    torch.manual_seed(0)
    bb = build_backbone(TINY_VIT, "layer0", "none", 224).eval()
    assert len(bb.visual.transformer.resblocks) == 1  # ours stops at the tap
    tower = ReferenceTower(bb)
    ran = []
    for block in tower.visual.transformer.resblocks:
        block.register_forward_hook(lambda m, i, o: ran.append(m))
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref, ours = tower(x), bb(x)
    assert len(ran) == 2 == tower.n_blocks
    torch.testing.assert_close(ref, ours, rtol=0, atol=1e-5)
    grid = tower.official_layout(ref)
    assert grid.shape == (2, 64, 14, 14) and torch.equal(grid, ref[:, 1:].transpose(1, 2).reshape(2, 64, 14, 14))


def test_reference_tower_resnet():
    torch.manual_seed(0)
    bb = build_backbone(TINY_RN, "layer2", "none", 224).eval()
    tower = ReferenceTower(bb)
    assert tower.visual.attnpool is not None and tower.visual.layer4 is not None
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(tower(x), bb(x))


def test_cli_options(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake(name, **kw):
        seen.update(kw, name=name)
        return {"table": "TABLE", "results": [], "ratios": {}}

    monkeypatch.setattr(bench, "run_bench", fake)
    out = tmp_path / "r.json"
    from declip_plugin.cli import main

    assert main(["--debug", "bench", "declip_demo", "--batch-size", "8", "--n-images", "16", "--device", "cpu", "--modes",
                       "train", "--compile", "--opt", "precision=fp32", "--json", str(out)]) == 0
    assert seen["name"] == "declip_demo" and seen["batch_size"] == 8 and seen["n_images"] == 16
    assert seen["modes"] == "train" and seen["compile"] is True and seen["overrides"] == {"precision": "fp32"}
    assert "TABLE" in capsys.readouterr().out
    assert json.loads(out.read_text())["table"] == "TABLE"


def test_bad_modes_are_an_error():
    import pytest

    from declip_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="modes"):
        bench.run_bench(quick=True, modes=("inference", "predict"))


def test_without_a_detector_the_bench_measures_the_config_a_detector_declares(monkeypatch):
    """bench holds no detector's names: DeCLIP declares its bench configs (bench_configs); with several
    detectors declaring them, the built-in plugin's wins, and otherwise one must be named."""
    import pytest

    from declip_plugin import plugins
    from declip_plugin.errors import ConfigError
    from declip_plugin.registry import Registry

    assert (bench.default_config_name(), bench.default_config_name(quick=True)) == ("declip", "declip_quick")
    reg = Registry("detector")
    plain = type("Plain", (), {})
    mine = type("Mine", (), {"bench_configs": {"default": "big", "quick": "small"}})
    reg.register("plain", plain, owner=plugins.BUILTIN_PLUGIN_NAME)
    reg.register("mine", mine, owner="someone")
    reg.register("mine_alias", mine, owner="someone")  # one class under two names: one offer
    monkeypatch.setattr(plugins, "get_registry", lambda kind: reg)
    assert (bench.default_config_name(), bench.default_config_name(quick=True)) == ("big", "small")
    reg.register("theirs", type("Theirs", (), {"bench_configs": {"default": "x", "quick": "y"}}), owner="other")
    with pytest.raises(ConfigError, match=r"name the detector config to measure \(detectors that declare bench "
                                          r"configs: mine, theirs\)"):
        bench.default_config_name()


def test_bench_json_that_is_a_folder(tmp_path, capsys):
    code, _, err = run_cli(["bench", "--quick", "--device", "cpu", "--json", tmp_path], capsys)
    assert code == 2
    assert_one_line(err, "--json", "is a folder")
