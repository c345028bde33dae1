"""Typed config: each key once, validated on load, on --opt and on --resume, errors naming the source."""
import dataclasses
import os

import pytest
import torch
import yaml

from declip_plugin.config import keys_markdown, load_resume_config, load_run_config, parse_overrides
from declip_plugin.config.run import DETECTOR_OWNED, RunConfig
from declip_plugin.config.schema import fields
from declip_plugin.errors import ConfigError
from declip_plugin.plugins import get_registry

DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "config.md")


def test_each_key_is_declared_once():
    run = set(fields(RunConfig))
    for name, cls in get_registry("detectors").items():
        own = set(fields(cls.config_class)) if getattr(cls, "config_class", None) else set()
        assert run & own <= set(DETECTOR_OWNED), (name, sorted(run & own))


def test_defaults_come_from_the_schema_alone():
    cfg = load_run_config({"model_name": "declip", "pretrained": "none"}, "train")
    assert cfg.manualSeed == RunConfig.manualSeed == 1024
    assert cfg.early_stopping.patience == 5 and cfg.optimizer.adam.lr == 1e-3
    # where a dict of a few keys enters (a dataset, a transform, the optimizer), the others take the same defaults
    from declip_plugin.data.transforms import SampleTransform
    from declip_plugin.optim import build_optimizer

    assert SampleTransform({"resolution": 8}).perturb_seed == 1024
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], {"optimizer": {"adam": {"lr": 0.5}}})
    assert type(opt) is torch.optim.Adam and opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["lr"] == 0.5


def test_a_loaded_config_is_typed_and_gives_back_the_merged_dict(tmp_path):
    """Loading turns the merged YAMLs into a RunConfig once (nested sections typed); to_dict() is the dict a
    detector is built from and a run's config.yaml holds, and reading that back gives the same config."""
    from declip_plugin.config.run import FrameNumKeys, OptimizerKeys

    cfg = load_run_config("declip_quick", "train", parse_overrides(["optimizer.type=sgd", "optimizer.sgd.lr=0.5",
                                                                    "frame_num.test=4", "lr_scheduler=step"]))
    assert isinstance(cfg.optimizer, OptimizerKeys) and cfg.optimizer.sgd.lr == 0.5 and cfg.optimizer.adam.lr == 1e-3
    assert cfg.frame_num == FrameNumKeys(train=1, test=4) and cfg.frames_per_video("val") == 4
    assert cfg.detector_keys["decoder_type"] == "conv-4" and cfg.config_path.endswith("declip_quick.yaml")
    merged = cfg.to_dict()
    assert merged["optimizer"]["sgd"] == {"lr": 0.5, "momentum": 0.0, "weight_decay": 0.0}
    assert merged["decoder_type"] == "conv-4" and merged["_config_path"] == cfg.config_path
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({k: v for k, v in merged.items() if k[0] != "_"}))
    assert load_resume_config(str(tmp_path)) == cfg.replace(config_path=None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.nEpochs = 3


def test_docs_list_every_key_as_the_code_declares_it():
    with open(DOCS, encoding="utf-8") as f:
        assert f.read() == keys_markdown()
    assert "| `cuda` | bool | `True` |  | DeepfakeBench only |" in keys_markdown()


def test_wrong_type_on_the_command_line_is_blamed_on_the_command_line():
    with pytest.raises(ConfigError, match=r"the command line \(--opt\): key 'nEpochs' must be an integer, got 'x'"):
        load_run_config("declip_demo", "train", parse_overrides(["nEpochs=x"]))


def test_wrong_value_in_a_yaml_names_the_file(tmp_path):
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump({"model_name": "declip", "decoder_type": "conv-7"}))
    with pytest.raises(ConfigError, match=rf"{path}: key 'decoder_type' is 'conv-7'; allowed: linear"):
        load_run_config(str(path), "train")


def test_unknown_key_names_the_closest_one(tmp_path):
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump({"model_name": "declip", "feature_layr": "layer20"}))
    with pytest.raises(ConfigError, match="unknown key 'feature_layr'; did you mean 'feature_layer'"):
        load_run_config(str(path), "train")


@pytest.mark.parametrize("item,match", [("nEpochs=[1", "not valid YAML"), ("=3", "empty key"),
                                        ("nEpochs", "expected KEY=VALUE"), ("a..b=1", "empty key")])
def test_malformed_overrides(item, match):
    with pytest.raises(ConfigError, match=match):
        parse_overrides([item])


def test_resume_config_is_validated(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model_name": "declip", "nEpochs": 2}))
    assert load_resume_config(str(tmp_path), {"nEpochs": 5}).nEpochs == 5
    with pytest.raises(ConfigError, match="the command line"):
        load_resume_config(str(tmp_path), {"nEpochs": "five"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model_name": "declip", "nEpoch": 2}))
    with pytest.raises(ConfigError, match=r"config.yaml: unknown key 'nEpoch'"):
        load_resume_config(str(tmp_path))


def test_a_detector_config_class_is_a_dataclass_with_defaults():
    cls = get_registry("detectors").get("declip").config_class
    assert dataclasses.is_dataclass(cls) and cls().decoder_type == "conv-20" and cls().pretrained == "openai"


def test_list_keys_are_lists_after_loading(tmp_path):
    """Normalised once, at loading (config.normalise): a single name is a one-item list, null an empty one,
    on every path the engine loads a config by (a run, a detector YAML, a resumed run's config.yaml)."""
    from declip_plugin.config import list_keys, load_detector_config

    assert set(list_keys()) >= {"train_dataset", "test_dataset", "val_dataset", "in_domain", "all_dataset"}
    given = {"model_name": "declip", "pretrained": "none", "train_dataset": "demo-telea", "test_dataset": None,
             "in_domain": ["demo-telea", "demo-ns"]}
    want = {"train_dataset": ["demo-telea"], "test_dataset": [], "val_dataset": [], "in_domain": ["demo-telea",
                                                                                                  "demo-ns"]}
    run = load_run_config(given, "train")
    assert {k: getattr(run, k) for k in want} == want
    (tmp_path / "det.yaml").write_text(yaml.safe_dump(given))
    det = load_detector_config(str(tmp_path / "det.yaml"))
    assert {k: det[k] for k in want} == want
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(given))
    resumed = load_resume_config(str(tmp_path / "run"), {"test_dataset": "demo-ns"})
    assert {k: getattr(resumed, k) for k in want} == {**want, "test_dataset": ["demo-ns"]}


@pytest.mark.parametrize("flags", [["--task_target", "../escaped"], ["--task_target", "a/b"],
                                   ["--task_target", "ff\n"], ["--task_target", ""], ["--opt", "name=../up"]],
                         ids=["dotdot", "slash", "newline", "empty", "name"])
def test_a_run_name_that_escapes_log_dir_or_vanishes_is_refused(tmp_path, capsys, flags):
    """--task_target and name become part of the run directory's name: a / or .. would put the run (its
    checkpoint included) outside --log_dir or in nested folders, a newline into the name, '' would vanish."""
    from declip_plugin.cli import main

    work = tmp_path / "work"
    work.mkdir()
    code = main(["train", "--detector_path", "declip_demo", "--data_root", str(tmp_path / "nodata"), "--device",
                 "cpu", "--log_dir", str(work / "logs"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    key, value = ("name", "../up") if flags[0] == "--opt" else ("task_target", flags[1])
    assert f"key {key!r} is {value!r}, but it names a folder inside log_dir" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and list(work.iterdir()) == []
