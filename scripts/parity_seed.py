#!/usr/bin/env python
"""Parity of our ``clip_enhanced``, ``clip_stan`` and ``timesformer_effb0`` with DeepFakesDetection's own detector code.

The seed's ``training/detectors/clip_enhanced.py`` and ``clip_stan.py`` are imported from the
unpacked snapshot (not re-typed) and built on random HF CLIP weights of ``clip-vit-base-patch16``'s
shape (a ``CLIPVisionConfig``, saved to a temporary folder for their ``from_pretrained``; nothing is
downloaded). Every weight of the seed's module is then copied into ours through an explicit name map
(:func:`seed_to_ours`), both run the same input in fp32 on the CPU in eval mode, and the logits are
compared; the trainable parameter counts of both sides are printed beside them.

For ``clip_stan`` the seed's forward is run twice: as it is (its difference is reported, not
checked) and with exactly two token-order corrections applied by a monkeypatch in this harness
(:func:`corrected_seed_stan`), which must match ours within the tolerance. The seed's
``timesformer`` differs from ours in structure after its frame encoder (docs/video.md): what is
compared there is the encoder and the tokens it hands the attention (:func:`timesformer_rows`).

    PYTHONPATH=.dfb/seed-site:.dfb/DeepFakesDetection/training \\
        .venv/bin/python scripts/parity_seed.py --seed-root .dfb/DeepFakesDetection

(``bash scripts/setup_seed_env.sh`` builds ``.dfb/seed-site``: transformers 4.x and peft as the seed
used them, beside the project's .venv.) Exit status: 0 every case within tolerance, 1 otherwise,
2 the seed's code or its packages cannot be imported.
"""
import argparse
import contextlib
import importlib
import io
import os
import sys
import tempfile
import types

import torch

from declip_plugin import build_detector

WIDTH, LAYERS, HEADS, T = 768, 12, 12, 8  # clip-vit-base-patch16; the seed hard-codes T = 8


# --- the seed's code --------------------------------------------------------------------------
def import_seed(seed_root):
    """The seed's two detector modules, imported from ``<seed_root>/training/detectors``.

    Its ``detectors/__init__.py`` and ``loss/__init__.py`` import every detector and loss of the
    fork (kornia, dlib, ...), so those two packages are declared here without running their
    ``__init__``; the loss the two detectors use (``loss.cross_entropy_loss``, registered in the
    seed's own LOSSFUNC) and the detector modules with their own imports (metrics, transformers,
    peft, einops) load as the seed wrote them. ``training/`` must be on PYTHONPATH (its modules
    import ``metrics`` and ``loss`` as top-level packages)."""
    training = os.path.join(seed_root, "training")
    if not os.path.isfile(os.path.join(training, "detectors", "clip_stan.py")):
        raise FileNotFoundError(f"{training}/detectors/clip_stan.py not found: unpack DeepFakesDetection-*.tar.gz "
                                f"(--seed-root)")
    for name in ("detectors", "loss"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(training, name)]
        sys.modules[name] = pkg
    importlib.import_module("loss.cross_entropy_loss")
    registry = importlib.import_module("metrics.registry")
    sys.modules["loss"].LOSSFUNC = registry.LOSSFUNC
    sys.modules["detectors"].DETECTOR = registry.DETECTOR  # timesformer_detector imports it from the package
    return tuple(importlib.import_module(f"detectors.{m}") for m in ("clip_enhanced", "clip_stan", "timesformer_detector"))


def random_hf_clip(folder, seed):
    """Random CLIPVisionModel weights of clip-vit-base-patch16's shape, saved for from_pretrained;
    its LayerNorms are moved away from 1 / 0 so that they matter."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=LAYERS,
                           num_attention_heads=HEADS, image_size=224, patch_size=16, hidden_act="quick_gelu")
    model = CLIPVisionModel(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(folder)


def perturb_seed(seed_det, seed):
    """Random values for what starts as a constant or is small, so that every part shows in the
    logits: clip_stan's branch starts as an identity (``temporal_fc`` zero, LayerNorms 1 / 0), and
    a head of nn.Linear's default init on an L2-normalised feature gives logits of ~0.03; a head of
    N(0, 1) weights gives logits of order 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in seed_det.named_parameters():
            if "temporal_fc" in name or "STAN" in name and "layer_norm" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
            elif name.startswith("model.") and name.endswith("weight"):
                p.copy_(torch.randn(p.shape, generator=g))


@contextlib.contextmanager
def corrected_seed_stan(stan_module):
    """THE TWO TOKEN-ORDER CORRECTIONS of the seed's clip_stan, applied for the duration of the block.

    The seed holds the branch's patches in (patch, time) order (``input_ini`` ends with
    ``'(b l) t d -> b (l t) d'``), and its temporal layer reads them so. Two other reads disagree:

    1. ``forward_time_module``, at every branch layer after the first, flattens the CLIP block's
       output (B, T, N, D) in (time, patch) order and adds it to the (patch, time) branch. The
       correction reorders that CLIP output to (patch, time) before the seed's own code runs.
    2. ``CLIPLayer_Spatial.forward`` reshapes the (patch, time) patches as (time, patch) frames, so
       its per-frame attention mixes patches of different frames. The correction hands it the
       patches in (time, patch) order and puts its output back into (patch, time) order (its own
       reshape back and residual keep whatever order it is given; its MLP is per token).

    Nothing else of the seed's forward changes."""
    from einops import rearrange

    det_cls, spatial_cls = stan_module.CLIPSTANDetector, stan_module.CLIPLayer_Spatial
    orig_time, orig_spatial = det_cls.forward_time_module, spatial_cls.forward

    def forward_time_module(self, x1, x2, num_layer, t):  # correction 1
        if x2 is not None:
            b = x1.size(0) // t
            frames = x1.reshape(b, t, x1.size(1), x1.size(2))
            patches = rearrange(frames[:, :, 1:], "b t p d -> b (p t) d").reshape(b, t, -1, x1.size(2))
            x1 = torch.cat([frames[:, :, :1], patches], dim=2).reshape_as(x1)
        return orig_time(self, x1, x2, num_layer, t)

    def spatial_forward(self, hidden_states, attention_mask=None, causal_attention_mask=None):  # correction 2
        cls, patches = hidden_states[:, :1], hidden_states[:, 1:]
        patches = rearrange(patches, "b (p t) d -> b (t p) d", t=self.t)
        out = orig_spatial(self, torch.cat([cls, patches], 1), attention_mask, causal_attention_mask)
        return torch.cat([out[:, :1], rearrange(out[:, 1:], "b (t p) d -> b (p t) d", t=self.t)], 1)

    det_cls.forward_time_module, spatial_cls.forward = forward_time_module, spatial_forward
    try:
        yield
    finally:
        det_cls.forward_time_module, spatial_cls.forward = orig_time, orig_spatial


# --- the name map -------------------------------------------------------------------------------
def _hf_block(src, dst, out, attn="self_attn"):
    """One HF CLIPEncoderLayer-like block (``src`` prefix) into an open_clip residual block's keys."""
    out[dst + "attn.in_proj_weight"] = torch.cat([src[f"{attn}.{x}_proj.weight"] for x in "qkv"])
    out[dst + "attn.in_proj_bias"] = torch.cat([src[f"{attn}.{x}_proj.bias"] for x in "qkv"])
    for theirs, ours in ((f"{attn}.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
        for t in ("weight", "bias"):
            if f"{theirs}.{t}" in src:
                out[dst + f"{ours}.{t}"] = src[f"{theirs}.{t}"]


def _sub(state, prefix):
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def hf_tower_to_openclip(vm, prefix):
    """HF ``vision_model.*`` tensors (``vm``, PEFT copies already resolved) -> open_clip VisionTransformer keys."""
    out = {prefix + "conv1.weight": vm["embeddings.patch_embedding.weight"],
           prefix + "class_embedding": vm["embeddings.class_embedding"],
           prefix + "positional_embedding": vm["embeddings.position_embedding.weight"]}
    for theirs, ours in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for t in ("weight", "bias"):
            out[prefix + f"{ours}.{t}"] = vm[f"{theirs}.{t}"]
    for i in range(LAYERS):
        _hf_block(_sub(vm, f"encoder.layers.{i}."), prefix + f"transformer.resblocks.{i}.", out)
    return out


def seed_to_ours(seed_state, kind):
    """The seed detector's state dict -> our detector's keys (``kind``: clip_enhanced | clip_stan).

    PEFT's LayerNorm tuning keeps the original LayerNorm (``base_layer``) and runs a copy
    (``ln_tuning_layers.default``): the copy is the one taken."""
    state = {k.replace(".ln_tuning_layers.default.", "."): v for k, v in seed_state.items() if ".base_layer." not in k}
    if kind == "clip_enhanced":
        out = hf_tower_to_openclip(_sub(state, "feature_extractor.base_model.model.vision_model."), "backbone.")
        head = _sub(state, "model.linear.") or _sub(state, "model.mlp.")  # mlp: the same Sequential indices
        out.update({"head." + k: v for k, v in head.items()})
        return out
    out = hf_tower_to_openclip(_sub(state, "feature_extractor.vision_model."), "backbone.visual.")
    depth = len({k.split(".")[1] for k in state if k.startswith("STAN_T_layers.")})
    for j in range(depth):
        _hf_block(_sub(state, f"STAN_S_layers.{j}."), f"spatial.{j}.block.", out)
        tl = _sub(state, f"STAN_T_layers.{j}.")
        _hf_block(tl, f"temporal.{j}.", out)
        for t in ("weight", "bias"):  # the temporal layer's own names
            out[f"temporal.{j}.norm.{t}"] = out.pop(f"temporal.{j}.ln_1.{t}")
            out[f"temporal.{j}.temporal_fc.{t}"] = tl[f"temporal_fc.{t}"]
    out["time_embed.weight"] = state["time_embed.weight"]
    out.update({"head." + k: v for k, v in _sub(state, "model.linear.").items()})
    return out


# --- the cases ----------------------------------------------------------------------------------
def trainable(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def quiet(fn, *args):
    """The seed prints every parameter name when it builds: keep the table readable."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def run_case(name, seed_cls, seed_cfg, ours_cfg, kind, x, stan_module=None, seed=0):
    """Build both, copy the seed's weights into ours, return the rows of the table for this case."""
    torch.manual_seed(seed + 7)
    theirs = quiet(seed_cls, seed_cfg).eval()
    perturb_seed(theirs, seed + 11)
    ours = build_detector(ours_cfg).eval()
    ours.load_state_dict(seed_to_ours(theirs.state_dict(), kind), strict=True)
    with torch.no_grad():
        mine = ours({"image": x})["cls"]
        scale = mine.abs().max().item()
        rows = []
        if stan_module is None:
            rows.append((name, (mine - theirs({"image": x})["cls"]).abs().max().item(), True))
        else:
            rows.append((name + " (seed as written)", (mine - theirs({"image": x})["cls"]).abs().max().item(), False))
            with corrected_seed_stan(stan_module):
                rows.append((name + " (seed, 2 token reads corrected)",
                             (mine - theirs({"image": x})["cls"]).abs().max().item(), True))
    return [(case, diff, checked, scale, trainable(ours), trainable(theirs)) for case, diff, checked in rows]


@contextlib.contextmanager
def offline_efficientnet():
    """The seed's timesformer builds ``EfficientNet.from_pretrained('efficientnet-b0')``, which
    downloads; for the duration it builds ``from_name`` (the same network, random weights)."""
    from efficientnet_pytorch import EfficientNet

    original = EfficientNet.from_pretrained
    EfficientNet.from_pretrained = classmethod(lambda cls, name, **kw: cls.from_name(name))
    try:
        yield
    finally:
        EfficientNet.from_pretrained = original


def timesformer_rows(seed_cls, x, seed=0):
    """Where the two timesformers have the same structure: the frame encoder and the tokens it
    gives the attention. The seed's EfficientNet-B0 (efficientnet_pytorch: TF "same" padding, BN eps
    1e-3) equals timm's ``tf_efficientnet_b0``; its 358 tensors are copied by position (same order
    and shapes). Compared: the (B, T, 49, 1280) tokens entering the first attention of each."""
    torch.manual_seed(seed + 7)
    with offline_efficientnet():
        theirs = quiet(seed_cls, {"loss_func": "cross_entropy"}).eval()
    g = torch.Generator().manual_seed(seed + 13)
    with torch.no_grad():  # BatchNorms away from their initial (identity) state
        for m in theirs.efficientnet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.running_var):
                    t.copy_(1 + 0.2 * torch.rand(t.shape, generator=g))
                for t in (m.bias, m.running_mean):
                    t.copy_(0.1 * torch.randn(t.shape, generator=g))
    ours = build_detector({"model_name": "timesformer_effb0", "encoder": "tf_efficientnet_b0",
                           "pretrained": "none"}).eval()
    src = [v for k, v in theirs.efficientnet.state_dict().items() if not k.startswith("_fc")]
    dst = ours.backbone.state_dict()
    assert len(src) == len(dst) and all(a.shape == b.shape for a, b in zip(src, dst.values()))
    ours.backbone.load_state_dict(dict(zip(dst, src)), strict=True)
    seen = {}
    h1 = theirs.temporal_attn.register_forward_pre_hook(lambda m, a: seen.__setitem__("seed", a[0]))
    h2 = ours.blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("ours", a[0]))
    with torch.no_grad():
        theirs({"image": x})
        ours({"image": x})
    h1.remove(), h2.remove()
    mine = seen["ours"].reshape(seen["seed"].shape)
    return [("timesformer: tokens into the attention (encoder tf_efficientnet_b0)",
             (mine - seen["seed"]).abs().max().item(), True, seen["seed"].abs().max().item(),
             trainable(ours), trainable(theirs))]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-root", default=".dfb/DeepFakesDetection", help="the unpacked DeepFakesDetection snapshot")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    try:
        enhanced, stan, tsf = import_seed(args.seed_root)
    except (ImportError, FileNotFoundError) as exc:
        print(f"error: the seed's detector code does not import ({exc}); build its packages with "
              f"`bash scripts/setup_seed_env.sh` and put .dfb/seed-site and <seed-root>/training on PYTHONPATH",
              file=sys.stderr)
        return 2
    g = torch.Generator().manual_seed(args.seed + 1)
    frames = torch.randn(2, 3, 224, 224, generator=g)
    clips = torch.randn(1, T, 3, 224, 224, generator=g)
    rows = []
    with tempfile.TemporaryDirectory() as clip_path:
        random_hf_clip(clip_path, args.seed)
        base = {"clip_path": clip_path, "loss_func": "cross_entropy"}
        for mlp in (1, 2):
            rows += run_case(f"clip_enhanced mlp_layer {mlp}", enhanced.CLIPEnhanced, dict(base, mlp_layer=mlp),
                             {"model_name": "clip_enhanced", "pretrained": "none", "mlp_layer": mlp},
                             "clip_enhanced", frames, seed=args.seed)
        rows += run_case("clip_stan depth 4 selfattn T 8", stan.CLIPSTANDetector,
                         dict(base, depth=4, time_module="selfattn", gradient_checkpointing=False),
                         {"model_name": "clip_stan", "pretrained": "none", "depth": 4, "time_module": "selfattn",
                          "branch_init": "random"}, "clip_stan", clips, stan_module=stan, seed=args.seed)
    rows += timesformer_rows(tsf.TimeSformerDetector, clips, seed=args.seed)
    print(f"{'case':<70} {'max |ours - seed|':>17} {'max |value|':>11} {'trainable ours':>15} {'trainable seed':>15}")
    ok = True
    for case, diff, checked, scale, mine, theirs in rows:
        verdict = ("ok" if diff <= args.tolerance else "FAIL") if checked else "reported, not checked"
        ok &= diff <= args.tolerance or not checked
        print(f"{case:<70} {diff:>17.3g} {scale:>11.3g} {mine:>15,} {theirs:>15,}  {verdict}")
    print(f"tolerance {args.tolerance:g} on the checked rows: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
