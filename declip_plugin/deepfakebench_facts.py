"""What declip_plugin relies on in SCLBD/DeepfakeBench, in one place.

Its file names, the YAML keys its scripts read, the keys its own train/test_config.yaml set, and
the functions the launcher wraps with the signatures they have at the commit the project tests
against (TESTED_COMMIT, the snapshot in shared/reference). The config schema, the export
(``declip export-dfb``) and the launcher (``declip dfb``) read these names from here; nothing here
imports DeepfakeBench or torch, and of this package only the run folder's owner (the result file
names DeepfakeBench's Trainer and our engine share): it sits on the lowest floor, so that data/
(which reads DeepfakeBench's layout and LMDB keys) and prepare/ use it without importing the
integration above them.
"""
from . import run_folder

#: the DeepfakeBench commit the launcher, the export and these facts were checked against
TESTED_COMMIT = "8a4a7bf"

# ----------------------------------------------------------------------------- files
SCRIPTS = {"train": "training/train.py", "test": "training/test.py"}
REGISTRY_FILE = "training/metrics/registry.py"
REGISTRY_MODULE = "metrics.registry"  # as the checkout imports it (training/ on the import path)
DETECTORS_DIR = "training/detectors"
TRAINER_FILE = "training/trainer/trainer.py"
TRAINER_MODULE = "trainer.trainer"
TRAINER_CLASS = "Trainer"
#: the host configs, exactly as the scripts open them (relative to the checkout root, their cwd)
HOST_CONFIGS = {"train": "./training/config/train_config.yaml", "test": "./training/config/test_config.yaml"}
REQUIRED_FILES = (SCRIPTS["train"], SCRIPTS["test"], REGISTRY_FILE)
#: result files DeepfakeBench's Trainer writes under log_dir/<model_name>_<time>/ (the same names as ours: the
#: run folder's owner, declip_plugin/run_folder.py, holds them)
METRICS_FILE = run_folder.DFB_METRICS
CHECKPOINT_FILE = run_folder.BEST_CHECKPOINT
TRAINING_LOG = run_folder.LOGS["train"]

#: the dataset JSON (dataset/abstract_dataset.py): {dataset: {label: {split: {video: {'label', 'frames'}}}}};
#: every label has the three splits; a frame's mask path is its path with every FRAMES_DIR replaced
#: by MASKS_DIR; frames are sorted by the integer value of their file stem
JSON_SPLITS = ("train", "val", "test")
FRAMES_DIR = "frames"
MASKS_DIR = "masks"

#: dataset modules that cannot be imported on a CPU-only machine: module -> (names, why)
CPU_UNIMPORTABLE = {
    "dataset.lsda_dataset": (("LSDADataset", "CustomSampler"),
                             "it calls torch.cuda.get_device_name() in a class body at import (needs a GPU)"),
    "dataset.fwa_blend": (("FWABlendDataset",),
                          "it loads preprocessing/dlib_tools/shape_predictor_81_face_landmarks.dat at import"),
}

# ----------------------------------------------------------------------------- YAML keys
#: every key of DeepfakeBench's detector / train / test YAMLs (training/config/**/*.yaml)
YAML_KEYS = (
    "log_dir", "pretrained", "model_name", "backbone_name", "backbone_config", "all_dataset", "train_dataset",
    "test_dataset", "compression", "train_batchSize", "test_batchSize", "workers", "frame_num", "resolution",
    "with_mask", "with_landmark", "use_data_augmentation", "data_aug", "mean", "std", "optimizer", "lr_scheduler",
    "lr_step", "lr_gamma", "lr_T_max", "lr_eta_min", "nEpochs", "start_epoch", "save_epoch", "rec_iter", "logdir",
    "manualSeed", "save_ckpt", "save_feat", "loss_func", "losstype", "metric_scoring", "cuda", "cudnn", "ddp",
    "local_rank", "mode", "lmdb", "dry_run", "rgb_dir", "lmdb_dir", "dataset_json_folder", "label_dict", "SWA",
    "save_avg", "video_mode", "clip_size", "dataset_type", "test_metric", "task_target", "swa_start", "weights_path",
)
DATA_AUG_KEYS = ("flip_prob", "rotate_prob", "rotate_limit", "blur_prob", "blur_limit", "brightness_limit",
                 "contrast_limit", "quality_lower", "quality_upper")
#: keys the scripts read with config[...] (no default) that the detector YAML must supply (the host
#: configs supply lmdb, rgb_dir, lmdb_dir, dataset_json_folder, label_dict and, for train, log_dir,
#: dry_run, SWA, save_avg)
REQUIRED_KEYS = {
    "test": (
        # test.py
        "model_name", "manualSeed", "cuda", "cudnn", "test_dataset", "test_batchSize", "workers",
        # dataset/abstract_dataset.py (also for testing: the augmentation pipeline is always built)
        "compression", "frame_num.test", "resolution", "with_mask", "with_landmark", "use_data_augmentation",
        "mean", "std", *(f"data_aug.{k}" for k in DATA_AUG_KEYS),
    ),
}
REQUIRED_KEYS["train"] = REQUIRED_KEYS["test"] + (
    # train.py + trainer/trainer.py
    "train_dataset", "frame_num.train", "train_batchSize", "optimizer.type", "lr_scheduler", "metric_scoring",
    "nEpochs", "start_epoch", "save_ckpt", "log_dir",
)
#: train.py's choose_metric
METRIC_SCORING = ("eer", "auc", "acc", "ap")
#: train.py's choose_optimizer: optimizer.type -> keys of its section
OPTIMIZER_KEYS = {"adam": ("lr", "weight_decay", "beta1", "beta2", "eps", "amsgrad"),
                  "sgd": ("lr", "momentum", "weight_decay"), "sam": ("lr", "momentum")}
#: train.py's choose_scheduler: lr_scheduler -> keys it reads
SCHEDULER_KEYS = {"step": ("lr_step", "lr_gamma"), "cosine": ("lr_T_max", "lr_eta_min")}
#: keys the scripts set themselves after merging the YAMLs (an override of them cannot hold):
#: key -> what to do instead
SET_AFTER_MERGE = {
    "test": {"test_dataset": "pass --test_dataset", "weights_path": "pass --weights_path"},
    "train": {"train_dataset": "pass --train_dataset", "test_dataset": "pass --test_dataset",
              "save_ckpt": "pass --no-save_ckpt", "save_feat": "pass --no-save_feat", "local_rank": "pass --local_rank",
              "ddp": "pass --ddp"},
}
#: train.py replaces dataset_json_folder by this when lmdb is true
TRAIN_LMDB_JSON_FOLDER = "preprocessing/dataset_json_v3"

#: detector keys with the values DeepfakeBench's own detector YAMLs use (export writes them where
#: the base YAML lacks one)
DETECTOR_DEFAULTS = {
    "log_dir": "./logs/training",
    "compression": "c23",
    "train_batchSize": 32,
    "test_batchSize": 32,
    "workers": 4,
    "frame_num": {"train": 1, "test": 1},
    "resolution": 224,
    "with_mask": False,
    "with_landmark": False,
    "use_data_augmentation": False,
    "data_aug": {"flip_prob": 0.5, "rotate_prob": 0.0, "rotate_limit": [-10, 10], "blur_prob": 0.5,
                 "blur_limit": [3, 7], "brightness_prob": 0.5, "brightness_limit": [-0.1, 0.1],
                 "contrast_limit": [-0.1, 0.1], "quality_lower": 40, "quality_upper": 100},
    "optimizer": {"type": "adam",
                  "adam": {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                           "amsgrad": False},
                  "sgd": {"lr": 0.001, "momentum": 0.0, "weight_decay": 0.0}},
    "lr_scheduler": None,
    "nEpochs": 10,
    "start_epoch": 0,
    "save_epoch": 1,
    "rec_iter": 100,
    "manualSeed": 1024,
    "save_ckpt": True,
    "save_feat": False,
    "metric_scoring": "auc",
    "cuda": True,
    "cudnn": True,
}

# ----------------------------------------------------------------------------- what the launcher wraps
#: where -> {function: its parameters}. A module-level function of a script, or a method of a
#: class ("file::Class"). The launcher checks these before it starts (statically) and again on the
#: loaded objects, and refuses to run when one is missing or its parameters changed.
WRAPPED = {
    "test": {
        SCRIPTS["test"]: {
            "init_seed": ("config",),  # the merged config, once, before any loader or model
            "inference": ("model", "data_dict"),  # every batch's predictions
            "test_one_dataset": ("model", "data_loader"),  # one test dataset
            "test_epoch": ("model", "test_data_loaders"),  # all of them, with DeepfakeBench's metrics
            "main": (),
        },
    },
    "train": {
        SCRIPTS["train"]: {"init_seed": ("config",), "main": ()},
    },
    "train-localization": {
        f"{TRAINER_FILE}::{TRAINER_CLASS}": {
            "inference": ("self", "data_dict"),
            "test_one_dataset": ("self", "data_loader"),
            "test_epoch": ("self", "epoch", "iteration", "test_data_loaders", "step"),
            "save_metrics": ("self", "phase", "metric_one_dataset", "dataset_key"),
        },
    },
}

# ----------------------------------------------------------------------------- its prepared data
#: the data keys of train_config.yaml / test_config.yaml (the embedded engine reads them too:
#: data/deepfakebench_layout.py); relative paths there are relative to the checkout root (its cwd)
HOST_DATA_KEYS = ("lmdb", "rgb_dir", "lmdb_dir", "dataset_json_folder", "label_dict")
#: the host config of a mode, under the checkout root
HOST_CONFIG_FILES = {"train": "training/config/train_config.yaml", "test": "training/config/test_config.yaml"}
#: dataset/abstract_dataset.py: these names all read the LMDB ``FaceForensics++_lmdb``; any other
#: dataset ``<name>`` reads ``<lmdb_dir>/<name>_lmdb``
FFPP_POOL = ("FaceForensics++", "FaceShifter", "DeepFakeDetection", "FF-DF", "FF-F2F", "FF-FS", "FF-NT")
FFPP_LMDB = "FaceForensics++"
LMDB_SUFFIX = "_lmdb"
#: what the loader strips from a JSON frame path that starts with "." to get its LMDB key
LMDB_KEY_STRIP = "./datasets\\"
#: preprocessing/dataset2lmdb_test.py walks ``<dataset_root_path>/<name>`` and stores every file under
#: the key ``<name>\`` + its path relative to that folder (os.path.relpath: "/" on Linux, "\" on
#: Windows); it skips every folder whose path contains this string
LMDB_WRITER_SKIPS = "video"
#: the suffix of a dataset name that picks the c40 level of FaceForensics++'s JSONs (``FF-DF_c40``)
C40_SUFFIX = "_c40"
