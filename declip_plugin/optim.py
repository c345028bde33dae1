"""The optimizer and the lr scheduler a run config names (as timm keeps its factories in timm.optim,
apart from the training loop): ``optimizer.type`` with its ``adam`` / ``sgd`` section, and
``lr_scheduler`` (stepped once per epoch by the trainer). The engine's trainer, ``declip bench`` and
a detector's bench reference build theirs here.
"""
import torch

from .errors import ConfigError


def build_optimizer(params, config):
    opt = config.get("optimizer") or {}
    kind = str(opt.get("type", "adam")).lower()
    if kind in ("adam", "adamw"):
        a = opt.get("adam") or {}
        cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
        return cls(params, lr=a.get("lr", 1e-3), betas=(a.get("beta1", 0.9), a.get("beta2", 0.999)),
                   eps=a.get("eps", 1e-8), weight_decay=a.get("weight_decay", 0.0), amsgrad=a.get("amsgrad", False))
    if kind == "sgd":
        s = opt.get("sgd") or {}
        return torch.optim.SGD(params, lr=s.get("lr", 1e-3), momentum=s.get("momentum", 0.0),
                               weight_decay=s.get("weight_decay", 0.0))
    raise ConfigError(f"optimizer.type {kind!r}: use adam, adamw or sgd")


def build_scheduler(optimizer, config):
    kind = config.get("lr_scheduler")
    if kind in (None, "none"):
        return None
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.get("lr_step") or 10,
                                               gamma=config.get("lr_gamma") or 0.1)
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.get("lr_T_max") or 10,
                                                          eta_min=config.get("lr_eta_min") or 0.0)
    raise ConfigError(f"lr_scheduler {kind!r}: use null, step or cosine")
