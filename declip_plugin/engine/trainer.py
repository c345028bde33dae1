"""The training loop: DeepfakeBench's Trainer conventions with DeCLIP's official schedule.

Each epoch: train, validate (``metric_scoring`` on the validation split), keep the best checkpoint,
drop the lr / 10 on a plateau until ``min_lr`` (the official schedule, :class:`PlateauSchedule`), save the
resume state. ``--resume RUN_DIR`` continues from the last finished epoch.
"""
import dataclasses
import logging
import math
import time

import torch

from ..checkpoints import atomic_save, read_checkpoint
from ..config import RunConfig
from ..config.run import EarlyStoppingKeys
from ..config.schema import check_mapping
from ..detectors import capability, load_weights, save_detector_checkpoint
from ..errors import ConfigError
from ..metrics.base import info_of
from ..optim import build_optimizer, build_scheduler
from ..run_folder import RunDir
from . import runtime
from ..progress import PROGRESS, eta_line, progress
from .evaluator import evaluate, format_metrics, to_device
from .loaders import Batches
from .preprocessing import frames_record

logger = logging.getLogger(__name__)

def _total_grad_norm(params):
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))


def optimizer_step(loss, optimizer, params, scaler=None):
    """Backward and one optimizer step; False when the step is skipped because the loss or a gradient
    is inf/NaN (the parameters and the optimizer state are then left as they were). Backward runs
    even for a non-finite loss, so that under DDP every rank reduces the same (non-finite) gradients
    and all ranks skip together. fp16 goes through the ``torch.amp.GradScaler`` ``scaler``, which
    skips such steps itself (and lowers its scale)."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return scaler.get_scale() >= scale
    loss.backward()
    if not bool(torch.isfinite(_total_grad_norm(params))):
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True


def train_step(model, detector, batch, device, precision, optimizer, params, scaler=None, batch_hook=None):
    """One training step as the engine runs it (the model in train mode): the batch on ``device``, then
    ``batch_hook`` (the feature cache), the forward of ``model`` (the detector, or its DDP wrapper)
    under ``precision``'s autocast (a :class:`~.runtime.Precision`), the detector's losses and
    :func:`optimizer_step`. Returns ``(batch, losses, applied)``."""
    batch = to_device(batch, device)
    if batch_hook is not None:
        batch = batch_hook(batch)
    with precision.autocast():
        pred = model(batch)
    losses = detector.get_losses(batch, pred)
    return batch, losses, optimizer_step(losses["overall"], optimizer, params, scaler)


class PlateauSchedule:
    """DeCLIP's official schedule on the validation metric (its train.py and earlystop.py): after
    ``patience`` validations without an improvement of at least ``delta`` the lr drops by ``lr_factor``
    (torch's ``ReduceLROnPlateau``), and the watch starts afresh with ``delta_after_drop``, as the official
    code does by building a new ``EarlyStopping(delta=-0.002)``: the next score is the new reference.
    Training stops once a drop takes the lr below ``min_lr``. Separately, ``is_best`` (the checkpoint kept
    as ckpt_best.pth) is an improvement of more than ``delta`` over the best score of the whole run. A
    missing or NaN score counts as no improvement. One boundary differs: a gain of exactly ``delta`` is an
    improvement to the official ``score < best - (-delta)`` test and not to torch's strict one.

    ``settings`` is the config's ``early_stopping`` section (config/run.py ``EarlyStoppingKeys``: its
    defaults and limits); keyword ``keys`` replace single keys of it, checked by the same schema."""

    def __init__(self, optimizer, settings=None, higher_is_better=True, **keys):
        settings = settings or EarlyStoppingKeys()
        if keys:
            check_mapping(keys, [EarlyStoppingKeys], where="early_stopping")
            settings = dataclasses.replace(settings, **keys)
        self.optimizer, self.delta, self.delta_after_drop = optimizer, settings.delta, settings.delta_after_drop
        self.min_lr, self.enabled, self.sign = settings.min_lr, settings.enabled, (1.0 if higher_is_better else -1.0)
        self.best = None
        # num_bad_epochs > patience drops, so patience - 1 drops at the patience-th validation as the official
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max" if higher_is_better else "min", factor=settings.lr_factor,
            patience=settings.patience - 1, threshold=settings.delta, threshold_mode="abs", min_lr=0.0, eps=0.0)

    def step(self, score):
        """Record ``score``; returns (is_best, stop)."""
        missing = score is None or (isinstance(score, float) and math.isnan(score))
        is_best = not missing and (self.best is None or self.sign * (score - self.best) > self.delta)
        if is_best:
            self.best = score
        if not self.enabled:
            return is_best, False
        reference = self.plateau.best
        self.plateau.step(math.nan if missing else score)
        if self.plateau.num_bad_epochs or self.plateau.best != reference:
            return is_best, False  # counting, or improved: no drop
        self.plateau.threshold = self.delta_after_drop  # a fresh watch, as the official code's after a drop
        self.plateau.best = self.plateau.mode_worse
        lr = self.optimizer.param_groups[0]["lr"]
        if lr < self.min_lr:
            logger.info("early stopping: no improvement for %d epochs and lr %.2e is below %.0e",
                        self.plateau.patience + 1, lr, self.min_lr)
            return is_best, True
        logger.info("no improvement for %d epochs: lr dropped to %.2e", self.plateau.patience + 1, lr)
        return is_best, False

    def state_dict(self):
        return {"best": self.best, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state):
        self.best = state["best"]
        if "plateau" in state:
            self.plateau.load_state_dict(state["plateau"])
        else:  # a resume state written before the schedule used ReduceLROnPlateau: {best, counter}
            self.plateau.best = self.plateau.mode_worse if self.best is None else self.best
            self.plateau.num_bad_epochs = int(state.get("counter") or 0)


class Trainer:
    def __init__(self, config, detector, train_loader, val_loader, run_dir, device, writer=None, batch_hook=None,
                 precision=None):
        config = RunConfig.of(config)
        self.config, self.run_dir, self.device = config, run_dir, device
        self.detector = detector
        self.model = detector  # the module the optimizer steps (DDP wrapper when distributed)
        if runtime.world_size() > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                detector, device_ids=[device.index] if device.type == "cuda" else None)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.frames = frames_record(config)  # saved in each checkpoint: `declip predict` makes video frames alike
        self.params = [p for p in detector.parameters() if p.requires_grad]
        if not self.params:
            raise ConfigError("the detector has no trainable parameters")
        self.optimizer = build_optimizer(self.params, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.metric = (config.val_metric or config.metric_scoring
                       or capability(detector, "default_val_metric"))
        self.early = PlateauSchedule(self.optimizer, config.early_stopping,
                                     higher_is_better=info_of(self.metric).higher_is_better)
        # what runs on this device (engine.runtime.decide_precision); fp16 comes with a gradient scaler
        self.precision = precision or runtime.decide_precision(config.precision, device)
        self.scaler = self.precision.make_scaler()
        self.skipped_steps = 0  # steps skipped for an inf/NaN loss or gradient
        self.writer = writer
        self.batch_hook = batch_hook
        self.epoch, self.step_count, self.best_epoch = 0, 0, None
        self.history = []

    # --- checkpoints ------------------------------------------------------------------------------
    @property
    def last_path(self):
        return RunDir(self.run_dir).last_checkpoint

    @property
    def best_path(self):
        return RunDir(self.run_dir).best_checkpoint

    def save_state(self):
        model_state = capability(self.detector, "state_to_save")  # the rest is rebuilt from the config
        state = {
            "format": "declip-plugin-train-state", "epoch": self.epoch, "step": self.step_count,
            "model": model_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "early_stopping": self.early.state_dict(), "best_epoch": self.best_epoch, "history": self.history,
            "scaler": self.scaler.state_dict() if self.scaler else None, "skipped_steps": self.skipped_steps,
        }
        atomic_save(state, self.last_path)

    def load_state(self, path):
        state = read_checkpoint(path, "resume state")
        if state.get("format") != "declip-plugin-train-state":
            raise ConfigError(f"{path} is not a training state written by `declip train`")
        from ..checkpoints import DetectorCheckpoint

        load_weights(self.detector, DetectorCheckpoint(path, "resume", state["model"], {}))
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.early.load_state_dict(state["early_stopping"])
        self.epoch, self.step_count = state["epoch"], state["step"]
        self.best_epoch, self.history = state.get("best_epoch"), list(state.get("history", []))
        self.skipped_steps = int(state.get("skipped_steps") or 0)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        logger.info("resumed from %s after epoch %d (step %d)", path, self.epoch, self.step_count)

    # --- loop -----------------------------------------------------------------------------------
    def seed_epoch(self):
        """Every random stream of epoch ``self.epoch`` (sample order, worker seeds, augmentation,
        dropout) from (manualSeed, epoch, rank) alone, so a resumed run repeats an uninterrupted one."""
        seed = runtime.epoch_seed(self.config.manualSeed, self.epoch, runtime.rank())
        runtime.seed_everything(seed)
        generator = getattr(self.train_loader, "generator", None)
        if generator is not None:
            generator.manual_seed(seed)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)

    def train_epoch(self):
        self.model.train()
        self.seed_epoch()
        log_every = self.config.log_every
        total, n, n_loss, skipped, t0 = 0.0, 0, 0, 0, time.perf_counter()
        bar = progress(Batches(self.train_loader), f"epoch {self.epoch + 1}", enabled=runtime.is_main(), summary=False)
        for batch in bar:
            batch, losses, applied = train_step(self.model, self.detector, batch, self.device, self.precision,
                                                self.optimizer, self.params, self.scaler, self.batch_hook)
            self.step_count += 1
            b = int(batch["label"].shape[0])
            n += b
            bar.update_images(b)
            if applied:
                total, n_loss = total + losses["overall"].item() * b, n_loss + b
            else:
                skipped += 1
                self.skipped_steps += 1
                logger.warning("step %d skipped: inf/NaN loss or gradient (loss %s); %d step(s) skipped in this run",
                               self.step_count, f"{losses['overall'].item():.4g}", self.skipped_steps)
            rate = n / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{losses['overall'].item():.4f}", img_s=f"{rate:.1f}")
            if self.writer and self.step_count % log_every == 0:
                for k, v in losses.items():
                    self.writer.add_scalar(f"train/{k}", v.item(), self.step_count)
        if self.scheduler:
            self.scheduler.step()
        return {"loss": total / n_loss if n_loss else math.nan, "images": n, "skipped_steps": skipped,
                "seconds": time.perf_counter() - t0}

    def validate(self):
        result = evaluate(self.detector, self.val_loader, self.device, self.config, self.precision, desc="validation",
                          batch_hook=self.batch_hook, summary_line=False)  # the epoch line carries it
        return result.metrics

    def fit(self, n_epochs):
        stop = False
        start_epoch, t_fit = self.epoch, time.perf_counter()
        while self.epoch < n_epochs and not stop:
            stats = self.train_epoch()
            self.epoch += 1
            lr = self.optimizer.param_groups[0]["lr"]
            record = {"epoch": self.epoch, "train_loss": stats["loss"], "lr": lr,
                      "train_img_s": stats["images"] / max(stats["seconds"], 1e-9),
                      "skipped_steps": stats["skipped_steps"]}
            speed = (f" | {record['train_img_s']:.1f} img/s, "
                     f"{eta_line(self.epoch - start_epoch, n_epochs - start_epoch, time.perf_counter() - t_fit)}")
            val_every = self.config.val_every
            if self.val_loader is not None and (self.epoch % val_every == 0 or self.epoch == n_epochs):
                metrics = self.validate()
                score = metrics.get(self.metric)
                if score is None and runtime.is_main():
                    raise ConfigError(f"val_metric/metric_scoring {self.metric!r} is not among the validation metrics "
                                      f"({', '.join(k for k, v in metrics.items() if v is not None)})")
                is_best, stop = self.early.step(score)
                record.update({f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))})
                if runtime.is_main():
                    logger.info("epoch %d/%d: train loss %.4f, lr %.1e | validation %s%s%s", self.epoch, n_epochs,
                                stats["loss"], lr, format_metrics(metrics), "  (best)" if is_best else "", speed,
                                extra=PROGRESS)  # --quiet: in training.log, not on the console
                    if self.writer:
                        self.writer.add_scalar("train/lr", lr, self.epoch)
                        self.writer.add_scalar("train/epoch_loss", stats["loss"], self.epoch)
                        for k, v in metrics.items():
                            if isinstance(v, (int, float)) and v == v and not k.startswith("n_"):
                                self.writer.add_scalar(f"val/{k}", v, self.epoch)
                        self._log_masks()
                    if is_best and self.config.save_ckpt:
                        self.best_epoch = self.epoch
                        save_detector_checkpoint(self.best_path, self.detector, epoch=self.epoch,
                                                 metric={self.metric: score}, frames=self.frames)
            elif runtime.is_main():
                logger.info("epoch %d/%d: train loss %.4f, lr %.1e%s", self.epoch, n_epochs, stats["loss"], lr, speed,
                            extra=PROGRESS)
            self.history.append(record)
            if runtime.is_main() and self.config.save_ckpt:
                if self.val_loader is None:
                    self.best_epoch = self.epoch
                    save_detector_checkpoint(self.best_path, self.detector, epoch=self.epoch, frames=self.frames)
                self.save_state()
            runtime.barrier()
        return self.history

    @torch.inference_mode()
    def _log_masks(self):
        n = self.config.tensorboard_masks
        if n <= 0 or self.writer is None:
            return
        batch = next(iter(self.val_loader))
        batch = to_device({k: (v[:n] if hasattr(v, "__getitem__") and v is not None else v)
                           for k, v in batch.items()}, self.device)
        if self.batch_hook is not None:
            batch = self.batch_hook(batch)
        self.detector.eval()
        with self.precision.autocast():
            pred = self.detector(batch, inference=True)
        if pred.get("mask") is None:
            return
        probs = torch.sigmoid(pred["mask"].float()).cpu()
        self.writer.add_images("val/predicted_masks", probs, self.epoch)
        if batch.get("mask") is not None:
            from ..data.masks import mask_to_nchw

            self.writer.add_images("val/ground_truth", mask_to_nchw(batch["mask"]).float().cpu(), self.epoch)
