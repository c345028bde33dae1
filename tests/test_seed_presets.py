"""The seed presets (configs/detector/*_seed.yaml) hold DeepFakesDetection's own training settings,
read from its YAMLs in the snapshot (../shared/reference/DeepFakesDetection-*.tar.gz)."""
import tarfile

import pytest
import yaml

from declip_plugin.config import load_detector_config

from dfb_support import missing, snapshot

# our key -> how to read the same setting from the seed's YAML
SHARED = {
    "nEpochs": lambda s: s["nEpochs"],
    "use_data_augmentation": lambda s: s["use_data_augmentation"],
    "train_batchSize": lambda s: s["train_batchSize"],
    "test_batchSize": lambda s: s["test_batchSize"],
    "frame_num": lambda s: s["frame_num"],
    "resolution": lambda s: s["resolution"],
    "manualSeed": lambda s: s["manualSeed"],
    "train_dataset": lambda s: s["train_dataset"],
    "test_dataset": lambda s: s["test_dataset"],
    "mean": lambda s: s["mean"],
    "std": lambda s: s["std"],
    "loss_func": lambda s: s["loss_func"],
}
OWN = {
    "clip_stan": {"depth": lambda s: s["depth"], "time_module": lambda s: s["time_module"],
                  "video_mode": lambda s: s["video_mode"], "clip_size": lambda s: s["clip_size"]},
    "clip_enhanced": {"mlp_layer": lambda s: s["mlp_layer"]},
}
# DeepfakeBench's loader reads these data_aug keys (training/dataset/abstract_dataset.py)
AUG_KEYS = ("flip_prob", "rotate_prob", "rotate_limit", "blur_prob", "blur_limit", "brightness_prob",
            "brightness_limit", "contrast_limit", "quality_lower", "quality_upper")


def seed_yaml(name):
    tar = snapshot("DeepFakesDetection")
    if tar is None:
        missing("no DeepFakesDetection snapshot in the reference folder")
    with tarfile.open(tar) as t:
        return yaml.safe_load(t.extractfile(f"DeepFakesDetection/training/config/detector/{name}.yaml"))


@pytest.mark.parametrize("name", ["clip_stan", "clip_enhanced"])
def test_seed_preset_has_the_seeds_training_settings(name):
    seed = seed_yaml(name)
    ours = load_detector_config(f"{name}_seed")
    for key, read in {**SHARED, **OWN[name]}.items():
        assert ours[key] == read(seed), (key, ours[key], read(seed))
    for key in AUG_KEYS:
        assert ours["data_aug"][key] == seed["data_aug"][key], key
    # AdamW(lr, weight decay 0) == Adam(lr, weight decay 0); betas and eps are the defaults of both
    assert seed["optimizer"]["type"] == "AdamW" and float(seed["optimizer"]["weight_decay"]) == 0.0
    adam = ours["optimizer"]["adam"]
    assert ours["optimizer"]["type"] == "adam" and adam["weight_decay"] == 0.0
    assert adam["lr"] == pytest.approx(float(seed["optimizer"]["lr"]))
    assert [adam["beta1"], adam["beta2"]] == seed["optimizer"]["betas"]
    # the seed's cosine is stepped once, after the last epoch: the lr it trained with is constant
    assert seed["lr_scheduler"] == "cosine" and ours["lr_scheduler"] in (None, "none")


def test_seed_clip_stan_preset_builds_the_seeds_branch():
    ours = load_detector_config("clip_stan_seed")
    assert (ours["branch_init"], ours["drop_mode"], ours["drop_path"]) == ("random", "dropout", 0.1)


@pytest.mark.parametrize("name", ["clip_stan", "clip_stan_demo", "clip_stan_seed", "clip_enhanced", "clip_enhanced_demo",
                                  "clip_enhanced_seed", "clip_enhanced_vitl14", "timesformer", "timesformer_demo"])
def test_bundled_configs_of_the_seeds_detectors_load(name):
    """Every key of these YAMLs is one the schema knows (`fully_supervised`, DeCLIP's key, made
    clip_stan / timesformer configs fail to load)."""
    config = load_detector_config(name)
    assert config["model_name"] in ("clip_stan", "clip_enhanced", "timesformer_effb0", "timesformer")
