"""The run keys: DeepfakeBench's train/test config keys and the embedded engine's, each once, and
:class:`RunConfig`, the typed config a run reads.

A detector's own keys live in its ``config_class`` (see detectors/base.py). ``pretrained`` and
``resolution`` are DeepfakeBench keys that detectors also declare with their own defaults; the
detector's declaration wins (:data:`DETECTOR_OWNED`). Keys marked ``dfb_only`` are accepted so that
one YAML serves both hosts; only DeepfakeBench's own scripts read them.

Loading (config/__init__.py) merges and validates the YAMLs and turns the merged dict into a
:class:`RunConfig` once, as open_clip turns a model config dict into its typed config; the engine, the
data pipeline and ``declip bench`` read its attributes (``config.optimizer.adam.lr``,
``config.feature_cache.max_gb``). Every default and every limit of a key is the one declared here.
A detector (and a metric, a dataset adapter: the plugin contracts) still receives the merged dict,
:meth:`RunConfig.to_dict`, as DeepfakeBench builds a detector with ``cls(config)``.
"""
import copy
import dataclasses
from typing import Any, List, Optional, Union

from .schema import fields, from_mapping, internal, key

#: run keys a detector's config_class may declare again with its own default and type
DETECTOR_OWNED = ("pretrained", "resolution")
#: what a null ``mean`` / ``std`` means: CLIP's normalisation
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

StrList = Union[List[Any], str, None]


def _three_numbers(value):
    if not isinstance(value, list) or len(value) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return "must be a list of 3 numbers (one per RGB channel)"
    return None


def _three_positive(value):
    return _three_numbers(value) or (None if all(v > 0 for v in value) else "must hold 3 positive numbers")


@dataclasses.dataclass(frozen=True)
class AdamKeys:
    lr: float = key(1e-3, minimum=0)
    beta1: float = key(0.9)
    beta2: float = key(0.999)
    eps: float = key(1e-8)
    weight_decay: float = key(0.0)
    amsgrad: bool = key(False)


@dataclasses.dataclass(frozen=True)
class SGDKeys:
    lr: float = key(1e-3, minimum=0)
    momentum: float = key(0.0)
    weight_decay: float = key(0.0)


@dataclasses.dataclass(frozen=True)
class OptimizerKeys:
    type: str = key("adam", choices=("adam", "adamw", "sgd"), doc="adam and adamw read the adam block")
    adam: Optional[AdamKeys] = key(factory=AdamKeys)
    sgd: Optional[SGDKeys] = key(factory=SGDKeys)


@dataclasses.dataclass(frozen=True)
class EarlyStoppingKeys:
    enabled: bool = key(True)
    patience: int = key(5, minimum=1)
    delta: float = key(0.001, minimum=0, doc="the improvement that resets the patience (DeCLIP's official 0.001)")
    delta_after_drop: float = key(0.002, minimum=0, doc="the same after the first lr drop (DeCLIP's official 0.002)")
    lr_factor: float = key(0.1, above=0, below=1, doc="the lr is multiplied by it at a drop")
    min_lr: float = key(1e-6)


@dataclasses.dataclass(frozen=True)
class FeatureCacheKeys:
    enabled: Union[bool, str] = key("auto", choices=(True, False, "auto"))
    dir: Optional[str] = key(None)
    max_gb: float = key(8.0, above=0, doc="per tier (host memory, disk)")
    memory: bool = key(True)


@dataclasses.dataclass(frozen=True)
class FrameNumKeys:
    train: Optional[int] = key(None, minimum=1)
    test: Optional[int] = key(None, minimum=1, doc="also the val split's")


@dataclasses.dataclass(frozen=True)
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
    frame_num: Union[FrameNumKeys, int, None] = key(None, minimum=1, doc="frames kept per video: N, or {train, test}")
    with_mask: bool = key(False)
    mean: Optional[list] = key(None, check=_three_numbers, doc="normalisation mean, 3 numbers (RGB); null: CLIP's")
    std: Optional[list] = key(None, check=_three_positive, doc="normalisation std, 3 positive numbers; null: CLIP's")
    optimizer: Optional[OptimizerKeys] = key(factory=OptimizerKeys)
    lr_scheduler: Optional[str] = key(None, choices=("step", "cosine", "none"), doc="stepped once per epoch")
    lr_step: Optional[int] = key(10, minimum=1, doc="lr_scheduler step: epochs between drops")
    lr_gamma: Optional[float] = key(0.1, doc="lr_scheduler step: the factor of a drop")
    lr_T_max: Optional[int] = key(10, minimum=1, doc="lr_scheduler cosine: epochs of the half period")
    lr_eta_min: Optional[float] = key(0.0, doc="lr_scheduler cosine: the lowest lr")
    nEpochs: int = key(1, minimum=1)
    manualSeed: int = key(1024, minimum=0)
    save_ckpt: bool = key(True)
    metric_scoring: Optional[str] = key(None, doc="DeepfakeBench's model-selection metric (auc, acc, eer, ap); "
                                                  "the engine's when val_metric is null")
    mode: Optional[str] = key(None, choices=("train", "test"))
    video_mode: bool = key(False)
    clip_size: Optional[int] = key(None, minimum=1)
    compression: Optional[str] = key("c23", doc="the compression level of FaceForensics++-style DeepfakeBench data "
                                                "(c23, c40); a dataset config's own wins")
    # --- DeepfakeBench keys only its own scripts read -------------------------------------------
    backbone_name: Optional[str] = key(None, dfb_only=True)
    backbone_config: Optional[dict] = key(None, dfb_only=True)
    all_dataset: StrList = key(None, dfb_only=True)
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
    # --- not YAML keys: what loading and the engine add ----------------------------------------------
    config_path: Optional[str] = internal(None, doc="the YAML the config was loaded from (dict key _config_path)")
    require_masks: bool = internal(False, doc="the detector trains on masks: a train split without them is an "
                                              "error (set by the engine from the detector's training_data(); "
                                              "dict key _require_masks)")
    inspect: bool = internal(False, doc="datasets list their problems instead of raising (declip datasets "
                                        "--check; dict key _inspect)")
    detector_keys: dict = internal(factory=dict, doc="the detector's own keys, as given (its config_class checks "
                                                     "them when it is built)")

    @classmethod
    def from_dict(cls, config, where="config"):
        """The typed config of a merged config dict: the run keys checked (a null value takes the
        default), nested sections as their dataclasses, list keys as lists (a single name ``x`` ->
        ``[x]``, null -> ``[]``); every other key kept as given in :attr:`detector_keys`; the
        bookkeeping keys ``_config_path``, ``_require_masks``, ``_inspect`` as their fields."""
        typed = from_mapping(cls, config, where=where)
        names = fields(cls)
        lists = {name: _as_list(getattr(typed, name)) for name in list_keys()}
        marks = {name: config[f"_{name}"] for name in _MARKS if config.get(f"_{name}") is not None}
        own = {k: copy.deepcopy(v) for k, v in config.items() if k not in names and not str(k).startswith("_")}
        return dataclasses.replace(typed, **lists, **marks, detector_keys=own)

    @classmethod
    def of(cls, config=None, where="config"):
        """``config`` typed where it enters: a RunConfig as it is, a dict through :meth:`from_dict`
        (unset keys take their defaults), None the defaults."""
        if isinstance(config, cls):
            return config
        return cls.from_dict(dict(config or {}), where=where)

    def to_dict(self):
        """The merged config dict (what a detector's ``cls(config)``, a metric, a dataset adapter and a
        run's config.yaml get): every run key, then the detector's own keys, then the bookkeeping keys
        that are set (``_config_path``, ``_require_masks``, ``_inspect``)."""
        out = {name: _plain(getattr(self, name)) for name in fields(type(self))}
        out.update(copy.deepcopy(self.detector_keys))
        for name in _MARKS:
            if getattr(self, name):
                out[f"_{name}"] = getattr(self, name)
        return out

    def replace(self, **changes):
        """A copy with ``changes`` (run keys or internal fields, already typed)."""
        return dataclasses.replace(self, **changes)

    def batch_size(self, train):
        return self.train_batchSize if train else self.test_batchSize

    def frames_per_video(self, split):
        """``frame_num`` for ``split`` (the test value for val), or None when not set."""
        if isinstance(self.frame_num, FrameNumKeys):
            return self.frame_num.train if split == "train" else self.frame_num.test
        return self.frame_num

    def normalisation(self):
        """``(mean, std)``: the configured ones, else CLIP's (three floats each)."""
        return (tuple(float(v) for v in (self.mean or CLIP_MEAN)), tuple(float(v) for v in (self.std or CLIP_STD)))


#: internal flags and paths that travel in the merged dict as ``_<name>``
_MARKS = ("config_path", "require_masks", "inspect")


def list_keys():
    """The run keys that hold a list of names (``StrList``)."""
    return tuple(name for name, f in fields(RunConfig).items() if f.type == StrList)


def _as_list(value):
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else copy.deepcopy(value)
