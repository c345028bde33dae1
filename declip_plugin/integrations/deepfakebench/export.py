"""Export one of our datasets in the layout DeepfakeBench's ``DeepfakeAbstractBaseDataset`` reads.

``export_dfb(dataset_name, out_dir, config)`` writes::

    <out>/dataset_json/<name>.json                         the dataset JSON (dataset_json_folder)
    <out>/rgb/<name>/<name>_real/frames/<video>/000.png    real images (one frame per video)
    <out>/rgb/<name>/<name>_fake/frames/<video>/000.png    manipulated images
    <out>/rgb/<name>/<name>_fake/masks/<video>/000.png     their masks: white (255) = manipulated,
                                                           never inverted (Dolos masks are flipped)
    <out>/lmdb/<name>_lmdb/                                the same files in an LMDB (when the lmdb
                                                           package is installed), keys = JSON paths
    <out>/declip_<name>.yaml                               a detector YAML for the checkout
    <out>/export_<name>.json                               this export's summary (read by ``declip dfb --data``)

What DeepfakeBench's loader does with it (training/dataset/abstract_dataset.py):

* JSON ``{name: {label: {train|val|test: {video: {'label': label, 'frames': [paths]}}}}}``; every
  label must have the three split keys; ``label_dict[label]`` gives 0/1, so the labels
  ``<name>_real`` (0) and ``<name>_fake`` (1) must be in the merged config's ``label_dict``.
* Frames are sorted by ``int(<file stem>)``: hence ``000.png``. One image is one "video": its
  frame folder is named ``<real|fake>_<split>_<index>``, unique in the dataset, because
  DeepfakeBench's video AUC groups frames by the name of their parent folder.
* The mask path is the frame path with every ``frames`` replaced by ``masks``, so ``frames`` must
  occur once in it (checked). A missing mask file gives an all-zero mask (real images have none).
* Without LMDB a frame path that does not start with ``.`` is prefixed with ``./<rgb_dir>\\`` (a
  backslash, Windows style), so on Linux the paths must start with ``.``: they are written
  relative to the DeepfakeBench checkout (``bench_root``; its scripts run from there), e.g.
  ``../exports/rgb/...`` or ``./datasets/rgb/...``. Without a known checkout they are relative to
  ``out_dir`` (``./rgb/...``) and only the LMDB (whose keys are those strings) can be read.
* With LMDB the frame path string is the key (``./datasets\\`` would be stripped, never here).
  DeepfakeBench decodes LMDB masks in colour ((H, W, 3, 1) per image); our launcher's localization
  metrics accept that, a detector's own loss may not: prefer the rgb tree for mask datasets.

Images that are PNG files are hard-linked (copied when linking fails) after a completeness check;
other formats are decoded and written as PNG (lossless with respect to the decoded pixels).
"""
import copy
import dataclasses
import datetime
import glob
import json
import logging
import os
import re
import shutil
from typing import Any, Optional

import cv2
import numpy as np

from ...atomicio import atomic_write_text, check_output_dir, staging_dir, swap_in, write_png
from ...config.run import CLIP_MEAN, CLIP_STD
from ...errors import ConfigError, DataError, DeclipError
from ... import deepfakebench_facts as facts

logger = logging.getLogger(__name__)

SUMMARY_GLOB = "export_*.json"
SPLITS = facts.JSON_SPLITS
FRAME_NAME = "000.png"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

#: the detector YAML written for the checkout: DeepfakeBench's defaults (facts.DETECTOR_DEFAULTS)
#: under ours, for keys the base detector YAML lacks
DFB_DETECTOR_DEFAULTS = {**facts.DETECTOR_DEFAULTS, "model_name": "declip", "log_dir": "./logs/declip",
                         "with_mask": True, "mean": list(CLIP_MEAN), "std": list(CLIP_STD)}


def label_names(name):
    """``(real_label, fake_label)`` of an exported dataset: ``<name>_real``, ``<name>_fake``."""
    return f"{name}_real", f"{name}_fake"


def label_dict_for(name):
    real, fake = label_names(name)
    return {real: 0, fake: 1}


def read_summaries(out_dir):
    """The ``export_<name>.json`` summaries in ``out_dir`` (sorted by name)."""
    out = []
    for path in sorted(glob.glob(os.path.join(str(out_dir), SUMMARY_GLOB))):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read the export summary {path}: {e}") from None
        if isinstance(data, dict) and data.get("dataset"):
            out.append(data)
    return out


def _bench_root(config):
    if "bench_root" in config:
        root = config["bench_root"]
    else:
        root = os.environ.get("DEEPFAKEBENCH_ROOT")
    if not root:
        return None
    root = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(root):
        raise ConfigError(f"bench_root {root} is not a folder (the DeepfakeBench checkout the frame paths are made "
                          f"relative to)")
    if not os.path.isfile(os.path.join(root, "training", "test.py")):
        logger.warning("bench_root %s has no training/test.py: is it a DeepfakeBench checkout?", root)
    return root


def json_frame_path(path, base):
    """``path`` relative to ``base``, POSIX separators, starting with '.' (see the module docstring)."""
    rel = os.path.relpath(os.path.realpath(path), base).replace(os.sep, "/")
    return rel if rel.startswith(".") else "./" + rel


def check_name(name):
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or facts.FRAMES_DIR in name:
        raise ConfigError(
            f"DeepfakeBench dataset name (--name) {name!r}: use letters, digits and . _ + - (it names the JSON file, "
            f"the LMDB folder and the labels), without the word 'frames' (DeepfakeBench finds masks by replacing it)")


def _place_image(src, dst, mode):
    """Hard link / copy a complete PNG, else decode and write PNG."""
    from ...data import images

    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if src.lower().endswith(".png"):
        images.check_complete(images.read_bytes(src), src)
        if mode == "link":
            try:
                os.link(src, dst)
                return "linked"
            except OSError:
                pass
        shutil.copyfile(src, dst)
        return "copied"
    rgb = images.read_image(src)
    write_png(dst, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return "converted"


def _write_mask(src, polarity, dst):
    from ...data import images

    write_png(dst, images.read_mask(src, polarity).astype(np.uint8) * 255)


def dfb_detector_config(base_detector):
    """``(source path, config, notes)``: the detector YAML ``base_detector`` (a bundled name or a path)
    as a YAML DeepfakeBench's scripts read: every key they read that it lacks, with DeepfakeBench's
    values (:data:`DFB_DETECTOR_DEFAULTS`); ``frame_num`` as the mapping they index; a
    ``metric_scoring`` train.py knows. ``notes`` lists what was added or changed."""
    from ...config import load_yaml, resolve_config_path

    path = resolve_config_path(base_detector, "detector")
    cfg = load_yaml(path)
    notes = []
    for k, v in DFB_DETECTOR_DEFAULTS.items():
        if k not in cfg:
            cfg[k] = copy.deepcopy(v)
            notes.append(k)
        elif isinstance(v, dict) and isinstance(cfg[k], dict):
            for kk, vv in v.items():
                if kk not in cfg[k]:
                    cfg[k][kk] = copy.deepcopy(vv)
                    notes.append(f"{k}.{kk}")
    if isinstance(cfg.get("frame_num"), int) and not isinstance(cfg["frame_num"], bool):
        cfg["frame_num"] = {"train": cfg["frame_num"], "test": cfg["frame_num"]}
        notes.append("frame_num as {train, test}")
    # backbone and resolution stay the base YAML's: a checkpoint trained with it (`declip train`)
    # loads strictly, and DeepfakeBench's loader resizes every image and mask to `resolution`
    if cfg.get("metric_scoring") not in facts.METRIC_SCORING:
        notes.append(f"metric_scoring {cfg.get('metric_scoring')!r} -> 'auc' (DeepfakeBench accepts "
                     f"{', '.join(facts.METRIC_SCORING)})")
        cfg["metric_scoring"] = "auc"
    return str(path), cfg, notes


def _detector_yaml(name, base_detector, has_masks, counts):
    path, cfg, notes = dfb_detector_config(base_detector)
    cfg["train_dataset"] = [name]
    cfg["test_dataset"] = [name]
    if "all_dataset" in cfg:
        cfg["all_dataset"] = [name]
    cfg["label_dict"] = label_dict_for(name)
    cfg["frame_num"] = {"train": 1, "test": 1}
    cfg["with_mask"] = bool(has_masks)
    if not counts["train"]["total"]:
        cfg["train_dataset"] = []
    return path, cfg, notes


def export_dfb(dataset_name, out_dir, config=None):
    """Export ``dataset_name`` (a named dataset of configs/dataset, or a spec dict) for DeepfakeBench.

    ``config`` keys (all optional):

    data_root      root of our named datasets (as for ``declip train``)
    bench_root     the DeepfakeBench checkout the frame paths are made relative to (default
                   ``$DEEPFAKEBENCH_ROOT``; ``None``/``''``: relative to out_dir, LMDB only)
    name           the dataset's name inside DeepfakeBench (default ``dataset_name``)
    splits         which of train, val, test to export (default all three; a missing one is an error)
    include_real   export the real images too (default true)
    link           'link' (hard links, default; copies when linking fails) or 'copy'
    lmdb           write ``<out>/lmdb/<name>_lmdb``: None = when the lmdb package is importable
    detector       base detector YAML for ``declip_<name>.yaml`` (name or path; default
                   ``declip_demo`` for ``demo-*`` datasets, else ``declip``)
    overwrite      replace an earlier export of the same name in out_dir (default false)
    max_samples, skip_bad_files   passed to the dataset adapter

    Returns the summary (also written to ``<out>/export_<name>.json``), with ``label_dict`` (the
    entries DeepfakeBench's label_dict needs), ``json``, ``yaml``, ``counts`` and ``lmdb``.
    """
    from ...data import normalize_split

    config = dict(config or {})
    if isinstance(dataset_name, dict):
        source_name = dataset_name.get("name") or dataset_name.get("adapter")
    else:
        source_name = str(dataset_name)
    name = source_name if config.get("name") is None else config["name"]  # '' is refused, never replaced
    check_name(name)
    splits = [normalize_split(s) for s in (config.get("splits") or SPLITS)]
    include_real = config.get("include_real", True)
    include_real = True if include_real is None else bool(include_real)
    mode = config.get("link", "link")
    if mode not in ("link", "copy"):
        raise ConfigError(f"link must be 'link' or 'copy', got {mode!r}")
    want_lmdb = config.get("lmdb") is not False  # lmdb is a requirement of the package: written unless refused
    bench_root = _bench_root(config)
    out = os.path.abspath(os.path.expanduser(str(out_dir)))
    base = os.path.realpath(bench_root) if bench_root else None
    rgb = os.path.join(out, "rgb", name)
    lmdb_path = os.path.join(out, "lmdb", f"{name}_lmdb")
    json_path = os.path.join(out, "dataset_json", f"{name}.json")
    check_output_dir(out, "export-dfb OUT_DIR")
    for p in (rgb, lmdb_path):
        if os.path.exists(p) and not config.get("overwrite"):
            raise DataError(f"{p} exists (an earlier export of {name!r}): pass overwrite (--overwrite) to replace it, "
                            f"or choose another folder")
    os.makedirs(out, exist_ok=True)
    base = base or os.path.realpath(out)
    # Everything is written into a staging folder beside the export (paths inside the files name the
    # final places) and swapped in once complete: a failed export leaves the previous one untouched.
    stage = staging_dir(out, f"export-{name}")  # removes the ones a killed export of this name left
    try:
        summary = _export_into(ExportPlan(dataset_name, source_name, name, config, splits, include_real, mode,
                                          want_lmdb, bench_root, base, out, rgb, lmdb_path, json_path, stage))
        swap_in(stage, out, [rgb, lmdb_path, json_path, summary["yaml"], os.path.join(out, f"export_{name}.json")])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    logger.info("DeepfakeBench dataset %s written to %s (JSON %s); label_dict entries to add: %s", name, out, json_path,
                ", ".join(f"{k}: {v}" for k, v in summary["label_dict"].items()))
    if not bench_root:
        logger.warning("no DeepfakeBench checkout given (bench_root / $DEEPFAKEBENCH_ROOT): frame paths are relative to "
                       "%s, so the checkout can read this export only through the LMDB%s", out,
                       "" if want_lmdb else " (none was written: re-export with bench_root)")
    return summary


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """One export, every setting resolved by :func:`export_dfb`: where each file goes (``rgb``,
    ``lmdb_path``, ``json_path`` name the final places; :meth:`staged` the place it is written first)."""

    dataset_name: Any  # a named dataset or a spec dict
    source_name: str
    name: str  # the dataset's name inside DeepfakeBench
    config: dict
    splits: list
    include_real: bool
    link: str  # 'link' or 'copy'
    want_lmdb: bool
    bench_root: Optional[str]
    base: str  # what the JSON's frame paths are relative to
    out: str
    rgb: str
    lmdb_path: str
    json_path: str
    stage: str

    def staged(self, path):
        return os.path.join(self.stage, os.path.relpath(path, self.out))


def _export_into(plan):
    from ...data import build_dataset

    dataset_name, source_name, name, config, splits = (plan.dataset_name, plan.source_name, plan.name, plan.config,
                                                       plan.splits)
    include_real, mode, want_lmdb, bench_root, base = (plan.include_real, plan.link, plan.want_lmdb, plan.bench_root,
                                                       plan.base)
    out, rgb, lmdb_path, json_path, staged = plan.out, plan.rgb, plan.lmdb_path, plan.json_path, plan.staged

    adapter_cfg = {k: config[k] for k in ("data_root", "max_samples", "skip_bad_files") if config.get(k) is not None}
    adapter_cfg.update(include_real=include_real)
    real_label, fake_label = label_names(name)
    tree = {real_label: {s: {} for s in SPLITS}, fake_label: {s: {} for s in SPLITS}}
    counts = {s: {"real": 0, "fake": 0, "masks": 0, "total": 0} for s in SPLITS}
    sources, files, how = {}, [], {"linked": 0, "copied": 0, "converted": 0}
    has_masks = False
    polarity = None
    for split in splits:
        try:
            ds = build_dataset(dataset_name, split, adapter_cfg)
        except DeclipError as e:
            raise DataError(f"export of {source_name!r}, split {split!r}: {e} (export fewer splits with "
                            f"splits, e.g. --splits test)") from None
        polarity = ds.mask_polarity
        has_masks = has_masks or bool(getattr(ds, "has_masks", True))
        index = {"real": 0, "fake": 0}
        for image, label, mask in ds.samples:
            kind = "fake" if int(label) else "real"
            label_name = fake_label if kind == "fake" else real_label
            video = f"{kind}_{split}_{index[kind]:05d}"
            index[kind] += 1
            frame = os.path.join(rgb, label_name, facts.FRAMES_DIR, video, FRAME_NAME)
            how[_place_image(image, staged(frame), mode)] += 1
            key = json_frame_path(frame, base)
            if key.count(facts.FRAMES_DIR) != 1:
                raise DataError(f"the frame path {key} contains 'frames' more than once, so DeepfakeBench would look for "
                                f"its mask in the wrong place (it replaces every 'frames' by 'masks'): export to a folder "
                                f"whose path does not contain 'frames'")
            files.append((key, staged(frame)))
            if mask is not None:
                mask_file = os.path.join(rgb, label_name, facts.MASKS_DIR, video, FRAME_NAME)
                _write_mask(mask, ds.mask_polarity, staged(mask_file))
                files.append((key.replace(facts.FRAMES_DIR, facts.MASKS_DIR), staged(mask_file)))
                counts[split]["masks"] += 1
            tree[label_name][split][video] = {"label": label_name, "frames": [key]}  # JSON keys, not folders
            sources[f"{label_name}/{video}"] = {"image": image, "mask": mask}
            counts[split][kind] += 1
            counts[split]["total"] += 1
        logger.info("exported %s/%s: %d real, %d manipulated, %d masks", name, split, counts[split]["real"],
                    counts[split]["fake"], counts[split]["masks"])
    if not include_real:
        tree.pop(real_label)
    if not any(c["total"] for c in counts.values()):
        raise DataError(f"export of {source_name!r}: no samples in splits {', '.join(splits)}")

    atomic_write_text(staged(json_path), json.dumps({name: tree}, indent=1))
    if want_lmdb:
        write_lmdb(staged(lmdb_path), files)
    base_detector = config.get("detector") or ("declip_demo" if source_name.startswith("demo-") else "declip")
    det_source, det_cfg, notes = _detector_yaml(name, base_detector, has_masks, counts)
    yaml_path = os.path.join(out, f"declip_{name}.yaml")
    _write_detector_yaml(staged(yaml_path), det_cfg, name, out, det_source, notes, bench_root, final=yaml_path)
    label_dict = {k: v for k, v in label_dict_for(name).items() if k in tree}
    summary = {
        "dataset": name, "source_dataset": source_name, "out_dir": out, "json": json_path, "yaml": yaml_path,
        "rgb_dir": rgb, "lmdb": lmdb_path if want_lmdb else None, "label_dict": label_dict,
        "paths_relative_to": base, "bench_root": bench_root, "splits": splits, "counts": counts,
        "has_masks": has_masks, "source_mask_polarity": polarity, "files": how, "include_real": include_real,
        "detector_base": det_source, "detector_defaults_added": notes,
        "exported_at": datetime.datetime.now().isoformat(timespec="seconds"), "sources": sources,
    }
    atomic_write_text(staged(os.path.join(out, f"export_{name}.json")),
                      json.dumps(summary, indent=1, sort_keys=True))
    return summary


def write_lmdb(path, files):
    """An LMDB at ``path`` holding each file of ``files`` ([(key, file path)]) under its key: the file's
    bytes, or for a ``.npy`` file its array's raw bytes, as DeepfakeBench's dataset2lmdb_test.py stores it."""
    import lmdb

    total = sum(os.path.getsize(p) for _, p in files)
    os.makedirs(path, exist_ok=True)
    env = lmdb.open(path, map_size=max(2 * total + (64 << 20), 1 << 27), subdir=True)
    try:
        with env.begin(write=True) as txn:
            for key, p in files:
                if p.endswith(".npy"):
                    data = np.load(p).tobytes()
                else:
                    with open(p, "rb") as f:
                        data = f.read()
                txn.put(key.encode("utf-8"), data)
    finally:
        env.close()
    logger.info("LMDB %s: %d entries", path, len(files))


def _write_detector_yaml(path, cfg, name, out, det_source, notes, bench_root, final=None):
    import yaml

    real, fake = label_names(name)
    root = bench_root or "<DeepfakeBench checkout>"
    header = [
        f"# DeCLIP detector config for DeepfakeBench, written by `declip export-dfb` for dataset {name}",
        f"# (base: {det_source}; keys DeepfakeBench reads added where missing: {', '.join(notes) or 'none'}).",
        "#",
        f"# Dataset JSON: {out}/dataset_json/{name}.json; labels {real}: 0, {fake}: 1.",
        "# DeepfakeBench's test.py replaces label_dict, lmdb and dataset_json_folder with those of",
        "# training/config/test_config.yaml; `declip dfb --data` sets them after its merge:",
        f"#   declip dfb test --bench-root {root} --data {out} -- \\",
        f"#       --detector_path {final or path} --test_dataset {name} --weights_path CKPT.pth",
        "# Without `declip dfb`, set in the checkout's training/config/test_config.yaml (and train_config.yaml):",
        f"#   dataset_json_folder: {out}/dataset_json   lmdb: false   (or lmdb_dir: {out}/lmdb with lmdb: true)",
        f"#   label_dict: add {real}: 0 and {fake}: 1",
        "",
    ]
    atomic_write_text(path, "\n".join(header) + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))
