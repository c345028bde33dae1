"""Result files and printed tables of a `declip dfb` run, beside DeepfakeBench's own.

* test.py writes no file: for each test dataset the launcher writes
  ``<results>/<model_name>[_<task>]_<time>/test/<dataset>/metric_dict_best.pickle`` (the dict
  test.py computed, in the format the Trainer saves) and ``localization_metrics.json``, plus
  ``declip_dfb_run.json`` for the run;
* the Trainer writes its own ``metric_dict_best.pickle``; ``localization_metrics.json`` goes beside it.

The localization metrics are printed in DeepfakeBench's ``key: value`` form after its own table.
"""
import logging
import math
import os

from ... import deepfakebench_facts as facts
from ...run_folder import RunDir, folder_name, write_dfb_run

logger = logging.getLogger("declip_plugin.integrations.deepfakebench")
#: printed to stdout without a prefix, as DeepfakeBench prints its metric table
TABLE = logging.getLogger("declip_plugin.integrations.deepfakebench.table")

PROTOCOL = ("declip_plugin.metrics.localization (pred mask logits -> sigmoid -> bilinear to GT size; GT binarised at "
            "0.5; IoU 0-100)")


def finite(v):
    """``v`` with NaN / inf replaced by None (JSON has neither)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


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
    return os.path.join(os.path.abspath(base), folder_name(config.get("model_name", "model"), config.get("task_target"),
                                                           time))


def save_test_results(folder, spec, config, metrics, localization):
    """Write test.py's metrics and our localization metrics per dataset under ``folder``."""
    keys = list(metrics) if isinstance(metrics, dict) else []
    keys += [k for k in localization if k not in keys]
    try:
        for key in keys:
            out = RunDir(folder).test(key)
            if isinstance(metrics, dict) and key in metrics:
                out.write_dfb_metrics(metrics[key])
            if key in localization:
                out.write_localization(localization_record(config, key, localization[key],
                                                           f"DeepfakeBench {facts.SCRIPTS['test']}"))
        write_dfb_run(folder, {
            "mode": spec["mode"], "checkout": spec["root"], "commit": spec.get("commit"), "argv": spec["argv"],
            "cpu": spec.get("cpu"), "overrides": spec.get("overrides"), "datasets": keys,
            "localization": sorted(localization)})
    except OSError as e:
        logger.error("cannot write the result files under %s: %s (pass --results-dir)", folder, e)
        return
    TABLE.info("===> results written to %s", folder)


def save_trainer_localization(log_dir, phase, key, config, result):
    out = RunDir(log_dir).test(key, phase=phase)
    try:
        out.write_localization(localization_record(config, key, result, f"DeepfakeBench Trainer ({facts.SCRIPTS['train']})"))
    except OSError as e:
        logger.error("cannot write %s: %s", out.localization, e)
