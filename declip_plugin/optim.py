"""The optimizer and the lr scheduler a run config names (as timm keeps its factories in timm.optim,
apart from the training loop): ``optimizer.type`` with its ``adam`` / ``sgd`` section, and
``lr_scheduler`` (stepped once per epoch by the trainer). The engine's trainer, ``declip bench`` and
a detector's bench reference build theirs here. Every default and allowed value is the run schema's
(config/run.py), checked when the config was loaded.
"""
import torch

from .config import RunConfig


def build_optimizer(params, config):
    """``optimizer.type`` (adam, adamw: the ``adam`` section; sgd: the ``sgd`` section) over ``params``."""
    opt = RunConfig.of(config).optimizer
    if opt.type in ("adam", "adamw"):
        a = opt.adam
        cls = torch.optim.AdamW if opt.type == "adamw" else torch.optim.Adam
        return cls(params, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=a.weight_decay,
                   amsgrad=a.amsgrad)
    s = opt.sgd
    return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)


def build_scheduler(optimizer, config):
    """``lr_scheduler`` (null or none: None; step: ``lr_step``, ``lr_gamma``; cosine: ``lr_T_max``, ``lr_eta_min``)."""
    config = RunConfig.of(config)
    if config.lr_scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=config.lr_gamma)
    if config.lr_scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.lr_T_max, eta_min=config.lr_eta_min)
    return None
