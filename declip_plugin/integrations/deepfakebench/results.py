"""Result files and printed tables of a `declip dfb` run, beside DeepfakeBench's own.

* test.py writes no file: for each test dataset the launcher writes
  ``<results>/<model_name>[_<task>]_<time>/test/<dataset>/metric_dict_best.pickle`` (the dict
  test.py computed, in the format the Trainer saves) and ``localization_metrics.json``, plus
  ``declip_dfb_run.json`` for the run;
* the Trainer writes its own ``metric_dict_best.pickle``; ``localization_metrics.json`` goes beside it.

The localization metrics are printed in DeepfakeBench's ``key: value`` form after its own table.
"""
import json
import logging
import math
import os
import pickle

from ...atomicio import atomic_write_bytes
from ... import deepfakebench_facts as facts

logger = logging.getLogger("declip_plugin.integrations.deepfakebench")
#: printed to stdout without a prefix, as DeepfakeBench prints its metric table
TABLE = logging.getLogger("declip_plugin.integrations.deepfakebench.table")

LOCALIZATION_FILE = "localization_metrics.json"
RUN_FILE = "declip_dfb_run.json"
PROTOCOL = ("declip_plugin.metrics.localization (pred mask logits -> sigmoid -> bilinear to GT size; GT binarised at "
            "0.5; IoU 0-100)")


def finite(v):
    """``v`` with NaN / inf replaced by None (JSON has neither)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _json_default(o):
    try:
        return finite(float(o))
    except (TypeError, ValueError):
        return str(o)


def write_json(path, data):
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def localization_record(config, key, result, where):
    config = config or {}
    return {"dataset": key, "model_name": config.get("model_name"), "weights_path": config.get("weights_path"),
            "metrics": result, "host": where, "written_by": "declip_plugin.integrations.deepfakebench",
            "protocol": PROTOCOL}


def print_table(key, result):
    TABLE.info("dataset: %s (localization, declip_plugin)", key)
    for k, v in result.items():
        TABLE.info("%s: %s", k, v)


def trainer_line(key, result):
    """The line logged with the Trainer's logger (so it lands in its training.log)."""
    return f"dataset: {key}    localization (declip_plugin): " + "    ".join(f"{k}: {v}" for k, v in result.items())


def run_folder(base, config, time):
    """``<base>/<model_name>[_<task_target>]_<time>``, as train.py / the Trainer name theirs."""
    config = config or {}
    task = config.get("task_target")
    return os.path.join(os.path.abspath(base), f"{config.get('model_name', 'model')}{'_' + task if task else ''}_{time}")


def save_test_results(folder, spec, config, metrics, localization):
    """Write test.py's metrics and our localization metrics per dataset under ``folder``."""
    keys = list(metrics) if isinstance(metrics, dict) else []
    keys += [k for k in localization if k not in keys]
    try:
        for key in keys:
            out = os.path.join(folder, "test", str(key))
            if isinstance(metrics, dict) and key in metrics:
                atomic_write_bytes(os.path.join(out, facts.METRICS_FILE), pickle.dumps(metrics[key]))
            if key in localization:
                write_json(os.path.join(out, LOCALIZATION_FILE),
                           localization_record(config, key, localization[key], f"DeepfakeBench {facts.SCRIPTS['test']}"))
        write_json(os.path.join(folder, RUN_FILE), {
            "mode": spec["mode"], "checkout": spec["root"], "commit": spec.get("commit"), "argv": spec["argv"],
            "cpu": spec.get("cpu"), "overrides": spec.get("overrides"), "datasets": keys,
            "localization": sorted(localization)})
    except OSError as e:
        logger.error("cannot write the result files under %s: %s (pass --results-dir)", folder, e)
        return
    TABLE.info("===> results written to %s", folder)


def save_trainer_localization(log_dir, phase, key, config, result):
    path = os.path.join(log_dir, phase, key, LOCALIZATION_FILE)
    try:
        write_json(path, localization_record(config, key, result, f"DeepfakeBench Trainer ({facts.SCRIPTS['train']})"))
    except OSError as e:
        logger.error("cannot write %s: %s", path, e)
