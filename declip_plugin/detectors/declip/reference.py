"""DeCLIP as the official code runs it, for ``declip bench``'s reference configuration.

The official code runs the *whole* CLIP image tower (every block, then ln_post / proj as
``encode_image`` does) in fp32 and picks the tapped block's output; its decoder takes the tokens in
its own layout, channels-first. :class:`DeCLIPReference` does the same with copies of a
:class:`~declip_plugin.detectors.declip.DeCLIPDetector`'s weights, and returns a pred_dict, so the
benchmark can time it beside the engine's path through the detector contract alone
(``bench_reference()``).
"""
import contextlib
import copy

import torch
from torch import nn

from ...errors import ConfigError


class ReferenceTower(nn.Module):
    """The full open_clip image tower (all blocks, pooling, projection), the tapped block's output
    taken with a forward hook: what the official code computes (``encode_image`` with intermediate
    layers) before it picks one layer."""

    def __init__(self, backbone):
        super().__init__()
        from ...backbones.clip import CLIPResNetBackbone, CLIPViTBackbone, _build_visual

        if not isinstance(backbone, (CLIPViTBackbone, CLIPResNetBackbone)):
            raise ConfigError(f"declip bench: the reference configuration is built for single CLIP towers (a ViT or "
                              f"a ModifiedResNet); backbone {backbone.name!r} is not one")
        self.kind, self.grid, self.layer = backbone.kind, backbone.grid, backbone.layer
        self.visual = _build_visual(backbone.oc_name)
        full, cut = self.visual.state_dict(), backbone.visual.state_dict()
        unexpected = [k for k in cut if k not in full]
        missing = [k for k in full if k not in cut and not k.startswith(backbone.dropped_prefixes)]
        if unexpected or missing:  # only the blocks after the tap may be absent from the cut tower
            raise ConfigError(f"declip bench: cannot copy the tapped tower into the full one (missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]})")
        with torch.no_grad():
            for k, v in cut.items():
                full[k].copy_(v)
        self.n_blocks = (len(self.visual.transformer.resblocks) if self.kind == "tokens" else 4)
        tap = self.visual.transformer.resblocks[self.layer] if self.kind == "tokens" else \
            getattr(self.visual, f"layer{self.layer}")
        self._batch_first = getattr(getattr(self.visual, "transformer", None), "batch_first", True)
        self._out = None
        tap.register_forward_hook(self._keep)
        self.requires_grad_(False)
        self.eval()

    def _keep(self, module, inputs, output):
        self._out = output

    def forward(self, x):
        self.visual(x)
        out, self._out = self._out, None
        if self.kind == "tokens" and not self._batch_first:
            out = out.transpose(0, 1)
        return out

    def official_layout(self, feats):
        """The decoder input as the official code lays it out: its tokens are (N, B, C) and it does
        ``permute(1, 2, 0).view(B, C, g, g)``; maps go in as they are."""
        if self.kind != "tokens":
            return feats
        lnd = feats[:, 1:].transpose(0, 1).contiguous()
        b, c = lnd.shape[1], lnd.shape[2]
        return lnd.permute(1, 2, 0).view(b, c, self.grid, self.grid)


class FusionReferenceTower(nn.Module):
    """The fusion as the official code runs it: both whole towers in fp32, the ViT's tapped tokens
    in its (N, B, C) layout made a (B, C, g, g) map, RN50 layer3 bilinearly resized to g x g
    (align_corners=False), concatenated on the channels."""

    def __init__(self, backbone):
        super().__init__()
        self.vit, self.rn = ReferenceTower(backbone.vit), ReferenceTower(backbone.rn)
        self.kind, self.grid, self.layer = "map", backbone.grid, backbone.layer
        self.n_blocks = self.vit.n_blocks

    def forward(self, x):
        vit_map = self.vit.official_layout(self.vit(x))
        rn_map = torch.nn.functional.interpolate(self.rn(x), size=(self.grid, self.grid), mode="bilinear",
                                                 align_corners=False)
        return torch.cat([vit_map, rn_map], dim=1)

    def official_layout(self, feats):
        return feats


def reference_tower(backbone):
    from ...backbones.fusion import FusionBackbone

    return FusionReferenceTower(backbone) if isinstance(backbone, FusionBackbone) else ReferenceTower(backbone)


def reference_decode(decoder, tower, feats):
    from .decoders import ConvDecoder

    if isinstance(decoder, ConvDecoder):
        return decoder.layers(tower.official_layout(feats))
    return decoder(feats)


class DeCLIPReference(nn.Module):
    """``forward(data_dict) -> pred_dict`` the official way: whole tower in fp32, NCHW decoder (a
    copy of the detector's, so training it leaves the detector untouched)."""

    def __init__(self, detector):
        super().__init__()
        self.tower = reference_tower(detector.backbone)
        self.decoder = copy.deepcopy(detector.decoder).to(memory_format=torch.contiguous_format)
        both = " + the whole RN tower" if isinstance(self.tower, FusionReferenceTower) else ""
        self.describe = f"all {self.tower.n_blocks} blocks{both}, fp32, NCHW decoder"
        self.reduction = detector.image_logit

    def train(self, mode=True):
        super().train(mode)
        self.tower.eval()  # frozen, as the official trainer keeps it
        return self

    def forward(self, data_dict, inference=False):
        x = data_dict["image"]
        with torch.no_grad() if inference else contextlib.nullcontext():
            mask = reference_decode(self.decoder, self.tower, self.tower(x))  # autograd on in training: frozen tower
        z = self.reduction(mask)
        return {"mask": mask, "prob": torch.sigmoid(z), "cls": torch.stack([-z / 2, z / 2], dim=1)}

    @torch.no_grad()
    def check(self, detector, device, resolution):
        """max |reference tapped output - the detector's| on one image, fp32 (they must agree)."""
        x = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)).to(device)
        return float((self.tower(x).float() - detector.backbone(x).float()).abs().max())

    def components(self, detector, config, device, precision, opt_precision, channels_last):
        """Where the time goes (``declip bench --modes components``): each tower and each decoder
        layout on its own, as dicts ``{name, describe, precision, step, modules, prepare}``; ``precision``
        is the engine's on ``device`` (engine.runtime.Precision: its ``autocast()``)."""
        from ...optim import build_optimizer

        tower, ref_decoder = self.tower, self.decoder

        feats_of = {}

        def prepare(batches):  # the tapped features of every batch, computed once, before the timed steps
            for b in batches:
                with torch.no_grad(), precision.autocast():
                    feats_of[id(b)] = detector.backbone(b["image"].to(device))

        def feats(batch):
            return feats_of[id(batch)]

        dec_engine = copy.deepcopy(detector.decoder)  # as the engine runs it (layout of prepare_detector)
        dec_official = copy.deepcopy(ref_decoder)
        opt_engine = build_optimizer(list(dec_engine.parameters()), config)
        opt_official = build_optimizer(list(dec_official.parameters()), config)
        loss_fn = nn.BCEWithLogitsLoss()
        layout = "channels_last" if channels_last else "as ConvDecoder.forward lays it out"

        @torch.no_grad()
        def tower_all(batch):
            tower(batch["image"].to(device))

        @torch.inference_mode()
        def tower_cut(batch):
            with precision.autocast():
                detector.backbone(batch["image"].to(device))

        @torch.inference_mode()
        def dec_engine_fwd(batch):
            dec_engine.eval()
            with precision.autocast():
                dec_engine(feats(batch))

        @torch.no_grad()
        def dec_official_fwd(batch):
            dec_official.eval()
            reference_decode(dec_official, tower, feats(batch).float())

        def step(dec, opt, fwd, batch, amp):
            dec.train()
            with precision.autocast() if amp else contextlib.nullcontext():
                out = fwd(dec, feats(batch) if amp else feats(batch).float())
            loss = loss_fn(out.float(), (batch["mask"].to(device) > 0.5).float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss.item()

        return [
            {"name": f"tower, all {tower.n_blocks} blocks", "describe": "fp32, no_grad", "precision": "fp32",
             "step": tower_all, "modules": (tower,), "prepare": prepare},
            {"name": f"tower, stop at layer{detector.backbone.layer}", "describe": f"{opt_precision}, inference_mode",
             "precision": opt_precision, "step": tower_cut, "modules": (detector.backbone,)},
            {"name": "decoder fwd, engine", "describe": f"{opt_precision}, decoder input {layout}",
             "precision": opt_precision, "step": dec_engine_fwd, "modules": (dec_engine,)},
            {"name": "decoder fwd, official", "describe": "fp32, contiguous NCHW input (official layout)",
             "precision": "fp32", "step": dec_official_fwd, "modules": (dec_official,)},
            {"name": "decoder step, engine", "describe": f"{opt_precision}, decoder input {layout}",
             "precision": opt_precision, "step": lambda b: step(dec_engine, opt_engine, lambda d, f: d(f), b, True),
             "modules": (dec_engine,)},
            {"name": "decoder step, official", "describe": "fp32, contiguous NCHW input (official layout)",
             "precision": "fp32", "modules": (dec_official,),
             "step": lambda b: step(dec_official, opt_official, lambda d, f: reference_decode(d, tower, f), b, False)},
        ]
