"""`declip train` and `declip test`: a run from config to result files.

Everything that can fail on the user's input (config, datasets of every split, weights, the
backbone's availability, the output folder) is checked before the run directory is created.
"""
import logging
import os
import shutil

from ..atomicio import check_output_dir, remove_stale_tmp
from ..config import load_resume_config, load_run_config
from ..detectors import build_detector, capability
from ..errors import ConfigError
from ..run_folder import CONFIG, LAST_CHECKPOINT, RunDir, close_log, new_run_dir
from . import runtime
from .evaluator import evaluate, format_metrics, write_results
from .loaders import build_split, data_config, make_loader, skipped_files
from .signals import handles_sigterm

logger = logging.getLogger(__name__)


def run_name(config):
    if config.name:
        return str(config.name)
    path = config.config_path
    return os.path.splitext(os.path.basename(path))[0] if path else str(config.model_name or "run")


def in_domain(config):
    return config.in_domain or config.train_dataset


def prepare_detector(config, device, weights_path=None):
    """The detector on ``device`` with the fast paths the config asks for (state dict keys unchanged)."""
    detector = build_detector(config, weights_path=weights_path).to(device)
    fast = getattr(detector, "prepare_fast_paths", None)  # absent on DeepfakeBench's duck type
    if fast is not None:
        fast(device, channels_last=config.channels_last, compile=config.compile)
    summary = capability(detector, "parameter_summary")
    logger.info("detector %s: %s of %s parameters trainable (%.4f%%)", config.model_name,
                f"{summary['trainable']:,}", f"{summary['total']:,}", 100 * summary["fraction"])
    return detector


def _check_log_dir(config):
    check_output_dir(config.log_dir or "./logs", "log_dir (--log_dir)")


def _open_run(config, mode, run_dir=None):
    """The run directory (new unless resuming) and its log file; called once every check passed."""
    if run_dir is None:
        run_dir = runtime.broadcast_object(
            new_run_dir(config.log_dir or f"./logs/{mode}", run_name(config), config.task_target)
            if runtime.is_main() else None)
    handler = RunDir(run_dir).open_log(mode) if runtime.is_main() else None
    return run_dir, handler


def _discard_failed_run(run_dir, keep=False):
    """A run that failed before finishing an epoch leaves nothing behind (a run with a finished epoch
    keeps its folder: ``--resume`` continues it)."""
    if run_dir is None or keep or not runtime.is_main() or not os.path.isdir(run_dir):
        return
    if RunDir(run_dir).finished_an_epoch():
        logger.info("the run stopped; %s keeps its last finished epoch (continue with --resume)", run_dir)
        return
    shutil.rmtree(run_dir, ignore_errors=True)


def _write_run_files(run_dir, config, detector, extra):
    if not runtime.is_main():
        return
    clean = {k: v for k, v in config.to_dict().items() if not k.startswith("_")}
    clean["name"] = run_name(config)  # so that --resume keeps the method name
    run = RunDir(run_dir)
    run.write_config(clean)
    run.write_info({
        "name": run_name(config), "model_name": config.model_name,
        "train_dataset": config.train_dataset, "test_dataset": config.test_dataset,
        "in_domain": in_domain(config), "config_path": config.config_path,
        "parameters": capability(detector, "parameter_summary"), **extra})


def build_test_sets(config):
    """Every test split, built (and so checked) before any work starts; ``test_include_real`` (when set)
    decides whether they hold real images, whatever training uses."""
    if config.test_include_real is not None:
        config = config.replace(include_real=config.test_include_real)
    return {name: build_split([name], "test", config) for name in config.test_dataset}


def test_datasets(detector, config, device, run_dir, test_sets, weights=None, batch_hook=None):
    """Evaluate on each test set; results under run_dir/test/<dataset>/. Returns {name: metrics}."""
    results = {}
    ids = set(in_domain(config))
    for name, ds in test_sets.items():
        loader = make_loader(ds, config, train=False, device=device)
        folder = RunDir(run_dir).test(name)
        mask_dir = folder.masks if config.save_masks else None
        result = evaluate(detector, loader, device, config, config.precision, mask_dir=mask_dir,
                          desc=f"test {name}", batch_hook=batch_hook)
        if runtime.is_main():
            extra = {"method": run_name(config), "weights": weights, "in_domain": name in ids if ids else None,
                     "skipped": skipped_files(ds)}
            write_results(folder, name, result, extra)
            logger.info("test %s: %s", name, format_metrics(result.metrics))
        results[name] = result.metrics
    return results


@handles_sigterm  # SIGTERM (kill, SLURM preemption) ends the run like Ctrl-C: see _discard_failed_run
def train(detector_config, overrides=None, resume=None, weights_path=None):
    """Train per the config; then test the best checkpoint on ``test_dataset``. Returns the run dir."""
    if resume:
        if weights_path:
            raise ConfigError(f"--resume {resume!r} continues from the run's own {LAST_CHECKPOINT}; drop "
                              f"--weights_path {weights_path!r} (or start a new run with it)")
        if not RunDir(resume).resumable():
            raise ConfigError(f"--resume {resume!r}: expected a run directory with {CONFIG} and {LAST_CHECKPOINT} "
                              f"(written after the first finished epoch)")
        config = load_resume_config(resume, overrides)
        removed = remove_stale_tmp(resume)
        if removed:
            logger.info("removed %d unfinished temporary file(s) of the interrupted run in %s", removed, resume)
    else:
        config = load_run_config(detector_config, "train", overrides)
    if not config.train_dataset:
        raise ConfigError("no train_dataset: set it in the YAML or pass --train_dataset")
    _check_log_dir(config)
    runtime.check_ddp(config)
    runtime.init_distributed(config)
    handler, ok, run_dir = None, False, None
    try:
        device = runtime.resolve_device(config)
        precision = runtime.resolve_precision(config, device)
        seed = config.manualSeed
        runtime.seed_everything(seed + runtime.rank())
        detector = prepare_detector(config, device, weights_path)
        config = data_config(config, detector)
        train_set = build_split(config.train_dataset, "train", config)
        val_set = build_split(config.val_dataset or config.train_dataset, "val", config)
        test_sets = build_test_sets(config)
        run_dir, handler = _open_run(config, "train", run_dir=resume)
        if not resume:
            _write_run_files(run_dir, config, detector, {"mode": "train", "precision": precision.describe()})
        logger.info("run directory: %s (device %s, %d process(es))", run_dir, device, runtime.world_size())
        train_loader = make_loader(train_set, config, train=True, device=device, seed=seed)
        val_loader = make_loader(val_set, config, train=False, device=device)
        writer = None
        if runtime.is_main():
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(RunDir(run_dir).tensorboard)
        from .feature_cache import maybe_feature_cache
        from .trainer import Trainer

        cache = maybe_feature_cache(detector, config, run_dir)  # frozen features reused across epochs
        trainer = Trainer(config, detector, train_loader, val_loader, run_dir, device, writer=writer, batch_hook=cache,
                          precision=precision)
        if resume:
            trainer.load_state(trainer.last_path)
        trainer.fit(config.nEpochs)
        if cache is not None:
            cache.log_stats()
        if writer:
            writer.close()
        runtime.barrier()
        if os.path.isfile(trainer.best_path):
            from ..detectors import load_weights

            load_weights(detector, trainer.best_path)
            logger.info("testing the best checkpoint (epoch %s): %s", trainer.best_epoch, trainer.best_path)
        if test_sets:
            test_datasets(detector, config, device, run_dir, test_sets, weights=trainer.best_path, batch_hook=cache)
        ok = True
        return run_dir
    finally:
        if handler:
            close_log(handler)
        if not ok:
            _discard_failed_run(run_dir, keep=bool(resume))
        runtime.shutdown_distributed(failed=not ok)


@handles_sigterm
def test(detector_config, weights_path, overrides=None):
    """Evaluate a checkpoint on ``test_dataset`` into a new run directory. Returns the run dir."""
    config = load_run_config(detector_config, "test", overrides)
    if not config.test_dataset:
        raise ConfigError("no test_dataset: set it in the YAML or pass --test_dataset")
    _check_log_dir(config)
    runtime.check_ddp(config)
    runtime.init_distributed(config)
    handler, ok, run_dir = None, False, None
    try:
        device = runtime.resolve_device(config)
        precision = runtime.resolve_precision(config, device)
        runtime.seed_everything(config.manualSeed + runtime.rank())
        detector = prepare_detector(config, device, weights_path)
        config = data_config(config, detector)
        test_sets = build_test_sets(config)
        run_dir, handler = _open_run(config, "test")
        _write_run_files(run_dir, config, detector, {"mode": "test", "weights": weights_path,
                                                     "precision": precision.describe()})
        test_datasets(detector, config, device, run_dir, test_sets, weights=weights_path)
        ok = True
        return run_dir
    finally:
        if handler:
            close_log(handler)
        if not ok:
            _discard_failed_run(run_dir)
        runtime.shutdown_distributed(failed=not ok)
