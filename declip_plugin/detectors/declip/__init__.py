"""DeCLIP: frozen CLIP features decoded into a manipulation mask (Smeu et al., WACV 2025).

``pred_dict``: ``mask`` (B,1,256,256) logits; ``cls`` (B,2) = [-z/2, z/2] so that
softmax(cls)[:, 1] == sigmoid(z) == ``prob``, where z is the image-level logit (the mean of the
mask logits, as the official detection model); ``feat`` (B,C) pooled backbone features.
"""
import dataclasses
import logging
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones import build_backbone, normalize_backbone_name
from ...checkpoints import DetectorCheckpoint, load_module_weights, read_detector_checkpoint
from ...config.schema import key
from ...data.masks import mask_to_nchw
from ...errors import CheckpointError, ConfigError
from ..base import AbstractDetector
from .decoders import OUTPUT_SIZE, build_decoder

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DeCLIPConfig:
    """The detector keys of a DeCLIP YAML (official option names), with the official release's defaults."""

    backbone: str = key("ViT-L/14", doc="ViT-L/14, RN50, ViT-L/14,RN50, xceptionnet, or an open_clip ViT/ModifiedResNet")
    arch: Optional[str] = key(None, doc="the official option name for backbone (CLIP:ViT-L/14 ...)")
    pretrained: Any = key("openai", doc="openai | none | a local OpenAI-format file | {tower: source} for the fusion")
    feature_layer: Optional[str] = key(None, doc="layerN; null: the last layer")
    decoder_type: str = key("conv-20", choices=("linear", "attention", "conv-4", "conv-12", "conv-20"))
    fully_supervised: bool = key(False, doc="true: localization (BCE on the mask); false: detection")
    fix_backbone: bool = key(False, doc="train the decoder only (the paper)")
    resolution: int = key(224, minimum=1)
    init_gain: float = key(0.02)
    score_reduction: str = key("mean", choices=("mean", "max"), doc="image logit from the mask logits")

    def __post_init__(self):
        if self.arch and self.backbone == "ViT-L/14":
            self.backbone = self.arch
        self.backbone = normalize_backbone_name(self.backbone)


class DeCLIPDetector(AbstractDetector):
    """``model_name: declip``."""

    config_class = DeCLIPConfig
    produces_mask = True
    #: the bundled configs ``declip bench`` measures when no detector is named: ViT-L/14 layer20 + conv-20,
    #: and with ``--quick`` the tiny ViT + conv-4
    bench_configs = {"default": "declip", "quick": "declip_quick"}

    def __init__(self, config):
        super().__init__(config)
        self.backbone = self.build_backbone(self.config)
        self.decoder = build_decoder(self.cfg.decoder_type, self.backbone, self.cfg.init_gain)
        self.loss_func = self.build_loss(self.config)
        if self.cfg.fix_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        elif self.backbone.name != "xceptionnet":
            logger.warning("fix_backbone is false: the %s backbone is trained too (the paper trains the decoder "
                           "only; set fix_backbone: true for that)", self.backbone.name)

    # --- DeepfakeBench contract ---------------------------------------------------------------
    def build_backbone(self, config):
        return build_backbone(self.cfg.backbone, self.cfg.feature_layer, self.cfg.pretrained, self.cfg.resolution)

    def build_loss(self, config):
        return nn.BCEWithLogitsLoss()

    @property
    def backbone_frozen(self):
        return self.cfg.fix_backbone

    # --- capabilities (detectors/base.py) -------------------------------------------------------
    def feature_tap(self):
        return self.backbone if self.backbone_frozen else None

    def training_data(self):
        """Localization (fully_supervised) learns from masks of fake images only, as the paper;
        detection from real and fake images."""
        return {"needs_masks": self.cfg.fully_supervised, "real_images": not self.cfg.fully_supervised}

    def default_val_metric(self):
        return "iou" if self.cfg.fully_supervised else "auc"

    def bench_reference(self):
        """The official way of running this model, for ``declip bench`` (a single CLIP tower or the fusion)."""
        from .reference import DeCLIPReference

        return DeCLIPReference(self)

    def state_to_save(self):
        state = self.state_dict()
        if not self.backbone_needs_saving():  # rebuilt from `pretrained`
            state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
        return state

    def prepare_fast_paths(self, device, channels_last=False, compile=False):
        if channels_last and torch.device(device).type == "cuda":
            self.decoder.to(memory_format=torch.channels_last)
        if compile:
            self.decoder.compile()  # in place: checkpoints keep their keys
        return self

    def train(self, mode=True):
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()  # a frozen backbone keeps its BatchNorm statistics
        return self

    def features(self, data_dict):
        feats = data_dict.get("features")
        if feats is not None:  # precomputed (feature cache)
            return feats
        image = data_dict["image"]
        if self.backbone_frozen:
            with torch.no_grad():
                return self.backbone(image)
        return self.backbone(image)

    def classifier(self, features):
        return self.decoder(features)

    def image_logit(self, mask_logits):
        flat = mask_logits.float().flatten(1)
        return flat.mean(dim=1) if self.cfg.score_reduction == "mean" else flat.max(dim=1).values

    def forward(self, data_dict, inference=False):
        feats = self.features(data_dict)
        mask = self.classifier(feats)
        z = self.image_logit(mask)
        pooled = self.backbone.pooled(feats.detach())
        return {"cls": torch.stack([-z / 2, z / 2], dim=1), "prob": torch.sigmoid(z), "feat": pooled.float(),
                "mask": mask}

    def get_losses(self, data_dict, pred_dict):
        if self.cfg.fully_supervised:
            gt = data_dict.get("mask")
            if gt is None:
                raise ConfigError("fully_supervised: true needs ground-truth masks in the batch (data_dict['mask'] "
                                  "is None); use a dataset with masks or set fully_supervised: false")
            gt = mask_to_nchw(gt).to(pred_dict["mask"].device)
            logits = pred_dict["mask"].float()
            valid = data_dict.get("mask_valid")
            if valid is not None:  # fakes without a mask (datasets mixed in a batch) teach nothing here
                valid = valid.to(logits.device).bool()
                gt, logits = gt[valid], logits[valid]
                if not len(gt):
                    return {"overall": pred_dict["mask"].sum() * 0.0}
            if logits.shape[-2:] != gt.shape[-2:]:
                logits = F.interpolate(logits, size=gt.shape[-2:], mode="bilinear", align_corners=False)
            loss = self.loss_func(logits, (gt > 0.5).float())
        else:
            z = self.image_logit(pred_dict["mask"])
            loss = self.loss_func(z, data_dict["label"].float().to(z.device))
        return {"overall": loss}

    @torch.no_grad()
    def get_train_metrics(self, data_dict, pred_dict):
        from ...metrics.detection import batch_metrics
        from ...metrics.localization import LocalizationMetrics

        out = batch_metrics(pred_dict["prob"], data_dict["label"])
        if self.cfg.fully_supervised and data_dict.get("mask") is not None:
            loc = LocalizationMetrics()
            loc.update(pred_dict["mask"].detach().float(), mask_to_nchw(data_dict["mask"]), data_dict["label"])
            out["iou"] = loc.compute()["iou"]
        return out

    # --- weights ------------------------------------------------------------------------------
    def backbone_needs_saving(self):
        """Whether a checkpoint must carry the backbone to reproduce this model on its own."""
        pre = self.backbone.pretrained
        sources = pre.values() if isinstance(pre, dict) else [pre]
        return not self.backbone_frozen or any(str(s).lower() == "none" for s in sources)

    def describe(self):
        return {"model_name": "declip", "backbone": self.cfg.backbone, "feature_layer": f"layer{self.backbone.layer}"
                if self.backbone.name != "xceptionnet" else "block2", "decoder_type": self.cfg.decoder_type,
                "pretrained": self.backbone.pretrained, "fully_supervised": self.cfg.fully_supervised,
                "resolution": self.cfg.resolution, "output_size": OUTPUT_SIZE}

    @classmethod
    def resolve_weights_name(cls, value):
        """The local file of an official checkpoint name (``declip:<name>``, fetched if missing; see
        :mod:`.official_weights`), or None when ``value`` is no such name."""
        from .official_weights import is_name, resolve

        return resolve(value) if is_name(value) else None

    @classmethod
    def convert_checkpoint(cls, obj, path):
        """The official DeCLIP format (``{'model': {fc.*, att1.*, model.*}, 'feature_layer',
        'decoder_type', ...}``) as a canonical checkpoint, or None for any other dict."""
        model = obj.get("model") if isinstance(obj, dict) else None
        if not (isinstance(model, dict) and any(k.startswith(("fc.", "att1.")) for k in model)):
            return None
        meta = {k: obj[k] for k in ("feature_layer", "decoder_type", "arch") if obj.get(k) is not None}
        return DetectorCheckpoint(str(path), "official", _official_to_canonical(model), meta)

    @classmethod
    def config_from_checkpoint(cls, ckpt, config=None):
        """With ``config``: skip fetching pretrained weights the file replaces. Without: the config of
        an official file. The release has two kinds (bit-ml/DeCLIP README): single-tower files carry
        the CLIP tower (``model.visual.*``; ViT-L/14) and fusion files carry the decoder alone, whose
        first convolution takes the 2048 channels of ViT-L/14 + RN50; anything else needs a YAML."""
        if config is not None:
            return dict(config, pretrained="none") if ckpt.has_backbone else config
        from ...config import load_detector_config

        meta = ckpt.meta
        if ckpt.format == "declip-plugin" and meta.get("model_name") == "declip" and meta.get("backbone"):
            cfg = load_detector_config("declip")  # a file of round 1, before checkpoints kept their config
            cfg.update({k: meta[k] for k in ("backbone", "feature_layer", "decoder_type", "fully_supervised",
                                             "resolution") if k in meta})
            if not str(meta.get("pretrained", "")).startswith("checkpoint:"):
                cfg["pretrained"] = meta.get("pretrained", cfg["pretrained"])
            return cls.config_from_checkpoint(ckpt, cfg)
        if ckpt.format != "official":
            return None
        first = ckpt.state.get("decoder.layers.0.weight")
        if ckpt.has_backbone:
            cfg = load_detector_config("declip")
        elif first is not None and first.dim() == 4 and first.shape[1] == 2048:
            cfg = load_detector_config("declip_vit_rn50")
        else:
            raise CheckpointError(f"official checkpoint {ckpt.path} carries no backbone and its decoder does not take "
                                  f"the ViT-L/14,RN50 fusion's 2048 channels: pass --detector_path with its YAML")
        cfg.update({k: ckpt.meta[k] for k in ("feature_layer", "decoder_type") if ckpt.meta.get(k)})
        return cls.config_from_checkpoint(ckpt, cfg)

    def load_weights(self, path_or_ckpt):
        """Load our, the official or a plain checkpoint; every decoder key must match."""
        ckpt = path_or_ckpt if isinstance(path_or_ckpt, DetectorCheckpoint) else read_detector_checkpoint(path_or_ckpt)
        self._check_meta(ckpt)
        if not ckpt.has_backbone and self.backbone_needs_saving():
            why = "is trained (fix_backbone: false)" if not self.backbone_frozen else "has no pretrained weights"
            raise CheckpointError(f"checkpoint {ckpt.path} holds no backbone weights, but this config's backbone "
                                  f"{self.cfg.backbone} {why}: the weights it needs are not in the file (use the "
                                  f"config it was trained with, or a checkpoint that carries the backbone)")
        others = sorted(k for k in ckpt.state if not k.startswith(("decoder.", "backbone.")))
        if others:
            raise CheckpointError(f"checkpoint {ckpt.path} ({ckpt.format} format) has keys that belong to no part of "
                                  f"the detector: {others[:10]}")
        load_module_weights(self.decoder, ckpt.section("decoder."), f"{ckpt.path} ({ckpt.format} format)",
                            what=f"decoder {self.cfg.decoder_type} on {self.cfg.backbone}")
        if ckpt.has_backbone:
            self._load_backbone(ckpt)
        return self

    def _check_meta(self, ckpt):
        meta = ckpt.meta
        if meta.get("decoder_type") and meta["decoder_type"] != self.cfg.decoder_type:
            raise CheckpointError(f"checkpoint {ckpt.path} was trained with decoder_type {meta['decoder_type']!r}, "
                                  f"the config says {self.cfg.decoder_type!r}: set decoder_type: {meta['decoder_type']}")
        layer = meta.get("feature_layer")
        if layer and self.backbone.name != "xceptionnet" and str(layer) != f"layer{self.backbone.layer}":
            raise CheckpointError(f"checkpoint {ckpt.path} was trained on feature_layer {layer!r}, the config says "
                                  f"layer{self.backbone.layer}: set feature_layer: {layer}")
        bb = meta.get("backbone") or meta.get("arch")
        if bb and normalize_backbone_name(bb) != self.cfg.backbone:
            raise CheckpointError(f"checkpoint {ckpt.path} was trained on backbone {bb!r}, the config says "
                                  f"{self.cfg.backbone!r}")

    def _load_backbone(self, ckpt):
        state = ckpt.section("backbone.")
        bb = self.backbone
        if hasattr(bb, "load_openai_state_dict") and not hasattr(bb, "vit"):
            bb.load_openai_state_dict(state, source=ckpt.path)
        else:  # fusion / xceptionnet: our own module layout
            load_module_weights(bb, state, ckpt.path, what=f"backbone {bb.name}",
                                droppable=_fusion_droppable(bb))
        if not isinstance(bb.pretrained, dict):
            bb.pretrained = f"checkpoint:{ckpt.path}"
            bb.cache_key = f"{bb.cache_key}|{bb.pretrained}"


def _official_to_canonical(model_state):
    state = {}
    clip_backbone = any(k.startswith("model.visual.") for k in model_state)
    for k, v in model_state.items():
        if k.startswith("fc."):
            state["decoder.layers." + k[3:]] = v
        elif k.startswith(("att1.", "att2.")):
            state["decoder." + k] = v
        elif k.startswith("model."):
            state[("backbone." if clip_backbone else "backbone.net.") + k[len("model."):]] = v
        else:
            state[k] = v  # reported as unexpected by the loader
    return state


def _fusion_droppable(bb):
    if not hasattr(bb, "vit"):
        return ()
    return tuple("vit.visual." + p for p in bb.vit.dropped_prefixes) + tuple("rn.visual." + p for p in bb.rn.dropped_prefixes)
