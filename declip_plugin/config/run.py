"""The run keys: DeepfakeBench's train/test config keys and the embedded engine's, each once.

A detector's own keys live in its ``config_class`` (see detectors/base.py). ``pretrained`` and
``resolution`` are DeepfakeBench keys that detectors also declare with their own defaults; the
detector's declaration wins (:data:`DETECTOR_OWNED`). Keys marked ``dfb_only`` are accepted so that
one YAML serves both hosts; only DeepfakeBench's own scripts read them.
"""
import dataclasses
from typing import Any, List, Optional, Union

from .schema import key

#: run keys a detector's config_class may declare again with its own default and type
DETECTOR_OWNED = ("pretrained", "resolution")

StrList = Union[List[Any], str, None]


@dataclasses.dataclass
class AdamKeys:
    lr: float = key(1e-3, minimum=0)
    beta1: float = key(0.9)
    beta2: float = key(0.999)
    eps: float = key(1e-8)
    weight_decay: float = key(0.0)
    amsgrad: bool = key(False)


@dataclasses.dataclass
class SGDKeys:
    lr: float = key(1e-3, minimum=0)
    momentum: float = key(0.0)
    weight_decay: float = key(0.0)


@dataclasses.dataclass
class OptimizerKeys:
    type: str = key("adam", choices=("adam", "adamw", "sgd"), doc="adam and adamw read the adam block")
    adam: Optional[AdamKeys] = key(factory=AdamKeys)
    sgd: Optional[SGDKeys] = key(factory=SGDKeys)


@dataclasses.dataclass
class EarlyStoppingKeys:
    enabled: bool = key(True)
    patience: int = key(5, minimum=1)
    delta: float = key(0.001, minimum=0, doc="the improvement that resets the patience (DeCLIP's official 0.001)")
    delta_after_drop: float = key(0.002, minimum=0, doc="the same after the first lr drop (DeCLIP's official 0.002)")
    lr_factor: float = key(0.1)
    min_lr: float = key(1e-6)


@dataclasses.dataclass
class FeatureCacheKeys:
    enabled: Union[bool, str] = key("auto", choices=(True, False, "auto"))
    dir: Optional[str] = key(None)
    max_gb: float = key(8.0, minimum=0)
    memory: bool = key(True)


@dataclasses.dataclass
class RunConfig:
    # --- DeepfakeBench keys, read by both hosts -------------------------------------------------
    model_name: Optional[str] = key(None, doc="the detector's registry name")
    log_dir: str = key("./logs/training/")
    pretrained: Any = key(None, doc="backbone weights; each detector says what it accepts")
    resolution: int = key(224, minimum=1)
    train_dataset: StrList = key(None)
    test_dataset: StrList = key(None)
    train_batchSize: int = key(32, minimum=1)
    test_batchSize: int = key(32, minimum=1)
    workers: int = key(2, minimum=0)
    frame_num: Union[dict, int, None] = key(None, doc="frames per video {train, test}")
    with_mask: bool = key(False)
    mean: Optional[list] = key(None, doc="normalisation mean; null: CLIP's")
    std: Optional[list] = key(None, doc="normalisation std; null: CLIP's")
    optimizer: Optional[OptimizerKeys] = key(factory=OptimizerKeys)
    lr_scheduler: Optional[str] = key(None, choices=("step", "cosine", "none"), doc="stepped once per epoch")
    lr_step: Optional[int] = key(None, minimum=1)
    lr_gamma: Optional[float] = key(None)
    lr_T_max: Optional[int] = key(None, minimum=1)
    lr_eta_min: Optional[float] = key(None)
    nEpochs: int = key(1, minimum=1)
    manualSeed: int = key(1024, minimum=0)
    save_ckpt: bool = key(True)
    metric_scoring: Optional[str] = key(None, doc="DeepfakeBench's model-selection metric (auc, acc, eer, ap); "
                                                  "the engine's when val_metric is null")
    mode: Optional[str] = key(None, choices=("train", "test"))
    video_mode: bool = key(False)
    clip_size: Optional[int] = key(None, minimum=1)
    # --- DeepfakeBench keys only its own scripts read -------------------------------------------
    backbone_name: Optional[str] = key(None, dfb_only=True)
    backbone_config: Optional[dict] = key(None, dfb_only=True)
    all_dataset: StrList = key(None, dfb_only=True)
    compression: Optional[str] = key(None, dfb_only=True)
    with_landmark: bool = key(False, dfb_only=True)
    use_data_augmentation: bool = key(False, dfb_only=True)
    data_aug: Optional[dict] = key(None, dfb_only=True)
    start_epoch: int = key(0, dfb_only=True)
    save_epoch: int = key(1, dfb_only=True)
    rec_iter: int = key(100, dfb_only=True)
    logdir: Optional[str] = key(None, dfb_only=True)
    save_feat: bool = key(False, dfb_only=True)
    loss_func: Optional[str] = key(None, dfb_only=True)
    losstype: Optional[str] = key(None, dfb_only=True)
    cuda: bool = key(True, dfb_only=True)
    cudnn: bool = key(True, dfb_only=True)
    ddp: bool = key(False, doc="DeepfakeBench's --ddp: the processes come from torchrun (docs/distributed.md); "
                               "refused in a process torchrun did not start")
    local_rank: int = key(0, dfb_only=True)
    lmdb: Optional[bool] = key(None, doc="read DeepfakeBench datasets' frames from <lmdb_dir>/<name>_lmdb; null: "
                                          "dfb_config's, else false (data/deepfakebench_layout.py)")
    dry_run: bool = key(False, dfb_only=True)
    rgb_dir: Optional[str] = key(None, doc="base of DeepfakeBench JSON frame paths; null: dfb_config's, else "
                                           "<data root>/rgb")
    lmdb_dir: Optional[str] = key(None, doc="folder of DeepfakeBench's <name>_lmdb; null: dfb_config's, else "
                                            "<data root>/lmdb")
    dataset_json_folder: Optional[str] = key(None, doc="folder of DeepfakeBench's <name>.json; null: dfb_config's, "
                                                       "else <data root>/dataset_json")
    label_dict: Optional[dict] = key(None, doc="DeepfakeBench JSON label name -> 0 real / 1 fake, added to the "
                                               "dataset's")
    SWA: bool = key(False, dfb_only=True)
    save_avg: bool = key(False, dfb_only=True)
    dataset_type: Optional[str] = key(None, dfb_only=True)
    test_metric: Optional[str] = key(None, dfb_only=True)
    task_target: Optional[str] = key(None, folder_name=True,
                                     doc="--task_target: run directories are named <name>_<task_target>_<time>, "
                                         "as DeepfakeBench's train.py names its log folders")
    swa_start: Optional[int] = key(None, dfb_only=True)
    weights_path: Optional[str] = key(None, dfb_only=True)
    # --- the embedded engine and the data side ---------------------------------------------------
    name: Optional[str] = key(None, folder_name=True,
                              doc="method name in run dirs and leaderboards (default: the YAML's name)")
    data_root: Optional[str] = key(None, doc="root of configs/dataset roots; null: $DECLIP_DATA_ROOT or ./datasets")
    dfb_config: Optional[str] = key(None, doc="a DeepfakeBench train_config.yaml / test_config.yaml or checkout: its "
                                              "dataset_json_folder, rgb_dir, lmdb, lmdb_dir, label_dict")
    val_dataset: StrList = key(None, doc="null: the train datasets' val split")
    in_domain: StrList = key(None, doc="null: the train datasets")
    mask_size: int = key(256, minimum=1, doc="side of the ground-truth masks; DeepfakeBench-format data (deepfakebench_json) "
                                             "resizes its masks to resolution instead, as DeepfakeBench's loader")
    include_real: Optional[bool] = key(None)
    test_include_real: Optional[bool] = key(None, doc="real images in the test splits (detection metrics, real-image "
                                                      "false-positive rate) even where training leaves them out; "
                                                      "null: as include_real")
    augmentation: Optional[str] = key("none", choices=("none", "blur", "color_jitter", "jpeg_compression", "all"))
    flip_prob: float = key(0.0, minimum=0, maximum=1)
    skip_bad_files: bool = key(False)
    max_samples: Optional[int] = key(None, minimum=1)
    early_stopping: Optional[EarlyStoppingKeys] = key(factory=EarlyStoppingKeys)
    device: Optional[str] = key(None, doc="null: cuda when available, else cpu")
    precision: str = key("auto", choices=("auto", "bf16", "fp16", "fp32"),
                         doc="autocast on CUDA (auto: bf16 where the GPU has it, else fp16; fp16 with a gradient "
                             "scaler; bf16 refused on a GPU without it); the CPU runs fp32")
    channels_last: bool = key(False)
    compile: bool = key(False)
    pin_memory: bool = key(True)
    persistent_workers: bool = key(True)
    feature_cache: Optional[FeatureCacheKeys] = key(factory=FeatureCacheKeys)
    save_masks: bool = key(False)
    tensorboard_masks: int = key(4, minimum=0)
    log_every: int = key(10, minimum=1)
    val_every: int = key(1, minimum=1)
    dist_backend: Optional[str] = key(None, choices=("nccl", "gloo"))
    val_metric: Optional[str] = key(None, doc="the engine's validation metric; null: metric_scoring, else the "
                                              "detector's default")
    perturb: Optional[str] = key(None, doc="test-time perturbation of the test split's images only, e.g. jpeg=50 "
                                           "(data/perturb.py: jpeg, blur, noise, downscale)")
    perturb_seed: Optional[int] = key(None, doc="seed of the perturbation's random draws; null: manualSeed")
