#!/usr/bin/env python
"""Numerical parity of declip_plugin with the official DeCLIP code (bit-ml/DeCLIP).

Both implementations run on the same random, fp16-valued OpenAI-format CLIP weights, the same
random decoder and the same input, in fp32 on the CPU, and their mask logits are compared:

    PYTHONPATH=/path/to/DeCLIP python scripts/parity_official.py \
        [--cases quick | vit-conv20,vit-conv20-nobackbone,vit-linear,vit-attention,fusion-conv20] [--tolerance 1e-3]

Per case:
  1. the official ``CLIPModelLocalisation`` is built; its ``clip.load`` is replaced (at run time,
     in this process only) by one that builds the official CLIP with ``build_model(state_dict,
     True)`` (per-layer outputs on) from our random weight files and calls ``.float()`` as the
     official CPU path does; the fusion's hard-coded ``.to("cuda")`` is redirected to the CPU;
  2. its decoder (``fc``, ``att1``, ``att2``) gets random weights, including BatchNorm running
     statistics, from a fixed seed; its mask logits and tapped features are recorded;
  3. its ``state_dict`` is saved in the official checkpoint layout and loaded into ours with
     ``build_detector(config, weights_path=...)`` (single-backbone checkpoints carry the CLIP
     weights, so our config points ``pretrained`` at a file that does not exist: it must not be
     read; the fusion checkpoint has only ``fc.*``, so our fusion gets the weight files);
  4. max |official - ours| of the (B,1,256,256) mask logits must be <= the tolerance.

The official code is only imported from PYTHONPATH (never copied); nothing is downloaded.
Exit status: 0 all cases within tolerance, 1 a case exceeds it, 2 the official code is missing.
"""
import argparse
import contextlib
import gc
import logging
import os
import shutil
import sys
import tempfile
import time
import types
import warnings

import torch

log = logging.getLogger("parity_official")

VIT, RN = "ViT-L/14", "RN50"
OPEN_CLIP_NAMES = {VIT: "ViT-L-14-quickgelu", RN: "RN50-quickgelu"}
LAYER = "layer20"
CASES = {
    "vit-conv20": (VIT, "conv-20"),
    "vit-conv20-nobackbone": (VIT, "conv-20"),
    "vit-linear": (VIT, "linear"),
    "vit-attention": (VIT, "attention"),
    "fusion-conv20": (f"{VIT},{RN}", "conv-20"),
}
#: cases whose official checkpoint is saved without the backbone (``model.*``) keys, as the released
#: fusion checkpoints are: our side then reads the CLIP weights from ``pretrained``
DECODER_ONLY = {"vit-conv20-nobackbone"}
#: the subset CI runs (scripts/run_tests.sh): both checkpoint layouts of ViT-L/14 and the fusion
QUICK = ("vit-conv20", "vit-conv20-nobackbone", "fusion-conv20")
OUT = 256
WEIGHT_SEED_OFFSET = {VIT: 10, RN: 20}  # the same weights whichever cases run


# --------------------------------------------------------------------------- official code
def import_official(official_root):
    """The official ``models.clip_models`` and ``models.clip.clip`` modules, or exit 2 with a hint."""
    where = official_root or "a bit-ml/DeCLIP checkout"
    hint = (f"set PYTHONPATH to {where} (the folder holding models/clip_models.py), e.g.\n"
            f"  PYTHONPATH={official_root or '/path/to/DeCLIP'} python {sys.argv[0]}")

    def die(message):
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)

    try:
        import pkg_resources  # noqa: F401  (the official clip.py imports packaging from it)
    except ImportError:
        # setuptools >= 81 dropped pkg_resources; the official code only uses pkg_resources.packaging
        import packaging.version

        shim = types.ModuleType("pkg_resources")
        shim.packaging = packaging
        sys.modules["pkg_resources"] = shim
        shimmed = True
    else:
        shimmed = False
    try:
        import models  # noqa: F401
        from models import clip_models
        official_clip = sys.modules["models.clip.clip"]
        official_model = sys.modules["models.clip.model"]
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "models":
            die(f"cannot import the official DeCLIP modules ({exc}); {hint}")
        die(f"the official DeCLIP code needs the package {exc.name!r}, which is not installed in this "
            f"environment (pip install {exc.name}); {exc}")
    except (ImportError, KeyError) as exc:
        die(f"cannot import the official DeCLIP modules ({type(exc).__name__}: {exc}); {hint}")
    if not hasattr(clip_models, "CLIPModelLocalisation") or not hasattr(official_model, "build_model"):
        die(f"the 'models' package found at {os.path.dirname(models.__file__)} is not the official DeCLIP code; {hint}")
    if shimmed:
        log.info("pkg_resources is not installed (setuptools >= 81): gave the official clip.py a stand-in "
                 "module with pkg_resources.packaging")
    root = os.path.dirname(os.path.dirname(os.path.abspath(models.__file__)))
    if official_root and os.path.realpath(root) != os.path.realpath(official_root):
        log.warning("the official code was imported from %s, not from --official-root %s", root, official_root)
    return clip_models, official_clip, official_model, root


@contextlib.contextmanager
def patched_official_loader(official_clip, official_model, weight_files, built):
    """Replace the official ``clip.load`` (downloads by name) by a build from ``weight_files``
    (each backbone built once per run and kept in ``built``: the official code only reads it)."""
    original = official_clip.load

    def load(name, device="cpu", **options):
        # the official model asks for its per-layer outputs (its keyword flag); build_model's 2nd argument
        if name not in weight_files:
            raise KeyError(f"parity script: no random weights made for official backbone {name!r}")
        if name not in built:
            state = torch.load(weight_files[name], map_location="cpu", weights_only=True)
            built[name] = official_model.build_model(state, True).float()
            del state
        model = built[name]
        return model, official_clip._transform(model.visual.input_resolution)

    official_clip.load = load
    try:
        yield
    finally:
        official_clip.load = original


@contextlib.contextmanager
def cuda_moves_to_cpu():
    """The official fusion hard-codes ``model.to("cuda")``: keep everything on the CPU instead."""
    original = torch.nn.Module.to

    def to(self, *args, **kwargs):
        args = tuple("cpu" if _is_cuda(a) else a for a in args)
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = "cpu"
        return original(self, *args, **kwargs)

    torch.nn.Module.to = to
    try:
        yield
    finally:
        torch.nn.Module.to = original


def _is_cuda(arg):
    return (isinstance(arg, str) and arg.startswith("cuda")) or (isinstance(arg, torch.device) and arg.type == "cuda")


# --------------------------------------------------------------------------- random weights
def perturb_(module, gen, small_bn_prefixes=(), conv_gain=1.0):
    """Random affine and running statistics for every BatchNorm/LayerNorm (so BN is no identity),
    random biases, and random weights of scale gain/sqrt(fan_in) for every conv/linear/attention
    (``conv_gain`` sqrt(2) keeps the scale through a deep Conv-BN-ReLU stack)."""
    with torch.no_grad():
        for name, m in module.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                scale = 0.2 if name.endswith(small_bn_prefixes) and small_bn_prefixes else 1.0
                m.weight.copy_(scale * (1.0 + 0.2 * torch.randn(c, generator=gen)))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                gain = conv_gain if isinstance(m, torch.nn.Conv2d) else 1.0
                m.weight.copy_(gain * torch.randn(m.weight.shape, generator=gen) / fan_in ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, torch.nn.MultiheadAttention):
                m.in_proj_weight.copy_(torch.randn(m.in_proj_weight.shape, generator=gen) / m.embed_dim ** 0.5)
                m.in_proj_bias.copy_(0.05 * torch.randn(m.in_proj_bias.shape, generator=gen))


def make_openai_weights(name, path, seed, fp16=True):
    """A random OpenAI-format CLIP state dict for ``name`` (via open_clip), fp16-valued like the
    released weights (unless ``fp16`` is false), saved to ``path``. Returns notes on changed keys."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(OPEN_CLIP_NAMES[name], pretrained=None)
    gen = torch.Generator().manual_seed(seed + 1)
    # open_clip zero-initialises each ResNet block's last BN (bn3): make it non-trivial, but small
    perturb_(model.visual, gen, small_bn_prefixes=("bn3", "downsample.1"))
    state = model.state_dict()
    del model
    notes = []
    # keys the official build_model (OpenAI CLIP) does not have
    extra = [k for k in state if k == "logit_bias" or k.endswith("attn_mask")]
    for k in extra:
        del state[k]
    if extra:
        notes.append(f"dropped {extra}")
    if fp16:  # OpenAI's files hold fp16 values; the official loader rounds to fp16 whatever it is given
        state = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    torch.save(state, path)
    return notes


# --------------------------------------------------------------------------- one case
def max_abs(a, b):
    return (a.detach().float() - b.detach().float()).abs().max().item()


def run_case(case, args, off, weight_files, workdir, x, built):
    from declip_plugin import build_detector

    clip_models, official_clip, official_model, _ = off
    backbone, decoder_type = CASES[case]
    fusion = "," in backbone
    row = {"case": case, "backbone": backbone, "layer": LAYER, "decoder": decoder_type, "features": []}
    t0 = time.time()

    # --- official side ------------------------------------------------------------------
    torch.manual_seed(args.seed)
    with patched_official_loader(official_clip, official_model, weight_files, built), cuda_moves_to_cpu():
        theirs = clip_models.CLIPModelLocalisation(backbone, LAYER, decoder_type=decoder_type)
    gen = torch.Generator().manual_seed(args.seed + 100)
    for part in ("fc", "att1", "att2"):
        if hasattr(theirs, part):
            perturb_(getattr(theirs, part), gen, conv_gain=2 ** 0.5)
    theirs.eval()
    towers = theirs.model if isinstance(theirs.model, list) else [theirs.model]
    for t in towers:
        t.eval()
    with torch.no_grad():
        mask_theirs = theirs(x).reshape(x.shape[0], 1, OUT, OUT)
        if fusion:
            feat_theirs = {"vit": towers[0].encode_image(x)[LAYER].permute(1, 0, 2),
                           "rn": towers[1].encode_image(x)["layer3"],
                           "fused": theirs.feature_extraction(x)}
        else:
            feat_theirs = {"vit": theirs.model.encode_image(x)[LAYER].permute(1, 0, 2)}
    ckpt = os.path.join(workdir, f"official-{case}.pth")
    state = theirs.state_dict()
    if case in DECODER_ONLY:
        state = {k: v for k, v in state.items() if not k.startswith("model.")}
    torch.save({"model": state, "feature_layer": LAYER, "decoder_type": decoder_type,
                "optimizer": {}, "total_steps": 0}, ckpt)
    n_keys = len(state)
    del state
    log.info("official checkpoint in the release layout: %d keys%s", n_keys,
             " (fc.* only: the fusion's towers live in a python list, as in the released fusion checkpoints)"
             if fusion else " (fc.* only: the backbone keys left out)" if case in DECODER_ONLY
             else " (fc/att decoder + model.* CLIP)")
    del theirs, towers
    gc.collect()

    # --- our side -----------------------------------------------------------------------
    cfg = {"model_name": "declip", "backbone": backbone, "feature_layer": LAYER, "decoder_type": decoder_type,
           "fully_supervised": True, "fix_backbone": True}
    if fusion:
        cfg["pretrained"] = {VIT: weight_files[VIT], RN: weight_files[RN]}
    elif case in DECODER_ONLY:
        cfg["pretrained"] = weight_files[VIT]
    else:  # the checkpoint carries the backbone: this file must never be opened
        cfg["pretrained"] = os.path.join(workdir, "must-not-be-read", "ViT-L-14.pt")
    ours = build_detector(cfg, weights_path=ckpt)
    ours.eval()
    log.info("ours: backbone weights from %s%s", ours.backbone.pretrained,
             "" if fusion or case in DECODER_ONLY else " (the configured pretrained file, which does not exist, was not read)")
    with torch.no_grad():
        mask_ours = ours({"image": x})["mask"]
        # our decoder on the official features: the decoder alone, without the backbone's float noise
        mask_ours_dec = ours.decoder(feat_theirs["fused"] if fusion else feat_theirs["vit"])
        if fusion:
            feat_ours = {"vit": ours.backbone.vit(x), "rn": ours.backbone.rn(x), "fused": ours.backbone(x)}
        else:
            feat_ours = {"vit": ours.backbone(x)}
    del ours
    os.remove(ckpt)
    gc.collect()

    labels = {"vit": f"ViT {LAYER} tokens", "rn": "RN50 layer3 map", "fused": "fused 16x16 map"}
    for k in feat_theirs:
        if feat_theirs[k].shape != feat_ours[k].shape:
            raise SystemExit(f"{case}: {labels[k]} shapes differ: official {tuple(feat_theirs[k].shape)}, "
                             f"ours {tuple(feat_ours[k].shape)}")
        row["features"].append((labels[k], max_abs(feat_theirs[k], feat_ours[k]),
                                feat_theirs[k].abs().max().item()))
    if mask_theirs.shape != mask_ours.shape:
        raise SystemExit(f"{case}: mask shapes differ: official {tuple(mask_theirs.shape)}, ours {tuple(mask_ours.shape)}")
    row["diff"] = max_abs(mask_theirs, mask_ours)
    row["scale"] = mask_theirs.abs().max().item()
    row["std"] = mask_theirs.float().std().item()
    row["rel"] = row["diff"] / max(row["scale"], 1e-12)
    row["dec_diff"] = max_abs(mask_theirs, mask_ours_dec)
    row["ckpt_keys"] = n_keys
    row["seconds"] = time.time() - t0
    row["ok"] = row["diff"] <= args.tolerance
    return row


# --------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official-root", default=None,
                   help="path of the bit-ml/DeCLIP checkout, used in messages only (the code is imported from PYTHONPATH)")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated subset of {', '.join(CASES)}, or 'quick' ({', '.join(QUICK)})")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max |diff| of the mask logits (default 1e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--workdir", default=None, help="folder for the temporary weight files (default: a new temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary weight files")
    p.add_argument("--no-fp16-round", dest="fp16_round", action="store_false",
                   help="do not round the random CLIP weights to fp16 (the official loader still does: "
                        "shows the size of that round trip; the fusion then differs by ~1e-2)")
    args = p.parse_args(argv)
    args.cases = list(QUICK) if args.cases == "quick" else [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or not args.cases:
        p.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    return args


def main(argv=None):
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("declip_plugin").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
    args = parse_args(argv)
    t_start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    off = import_official(args.official_root)
    import open_clip

    log.info("official DeCLIP code: %s", off[3])
    log.info("torch %s, open_clip %s, %d thread(s)", torch.__version__, open_clip.__version__, torch.get_num_threads())

    workdir = args.workdir or tempfile.mkdtemp(prefix="declip-parity-")
    os.makedirs(workdir, exist_ok=True)
    if os.path.realpath(workdir).startswith(os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))):
        log.warning("workdir %s lies inside the repository; the weight files are large", workdir)
    rows = []
    try:
        needed = {VIT} | ({RN} if any("," in CASES[c][0] for c in args.cases) else set())
        weight_files = {}
        for name in sorted(needed):
            path = os.path.join(workdir, OPEN_CLIP_NAMES[name] + "-random.pt")
            notes = make_openai_weights(name, path, args.seed + WEIGHT_SEED_OFFSET[name], fp16=args.fp16_round)
            weight_files[name] = path
            log.info("random %sOpenAI-format %s weights%s: %s", "fp16-valued " if args.fp16_round else "", name,
                     f" [{'; '.join(notes)}]" if notes else "", path)
        gen = torch.Generator().manual_seed(args.seed + 1000)
        x = torch.randn(args.batch, 3, 224, 224, generator=gen)  # like CLIP-normalized pixels
        built = {}
        for case in args.cases:
            log.info("case %s ...", case)
            row = run_case(case, args, off, weight_files, workdir, x, built)
            log.info("case %s: max|diff| %.3g (%.1fs)", case, row["diff"], row["seconds"])
            rows.append(row)
    finally:
        if args.keep:
            log.info("weight files kept in %s", workdir)
        elif args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            for name in os.listdir(workdir):
                if name.endswith("-random.pt"):
                    os.remove(os.path.join(workdir, name))

    print()
    total = time.time() - t_start
    print(f"DeCLIP parity vs official ({off[3]}), {total:.0f} s, fp32 CPU, batch {args.batch}, seed {args.seed}, "
          f"tolerance {args.tolerance:g}, CLIP weights {'fp16-valued' if args.fp16_round else 'NOT fp16-rounded'}")
    print("(rel = max|diff| / max|official mask logit|; decoder only = max|diff| when our decoder is fed the "
          "official features)")
    head = f"{'case':<22} {'backbone':<14} {'layer':<8} {'decoder':<10} {'max|diff| mask':>15} " \
           f"{'max|mask|':>10} {'std(mask)':>10} {'rel':>9} {'decoder only':>13}  result"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['case']:<22} {r['backbone']:<14} {r['layer']:<8} {r['decoder']:<10} {r['diff']:>15.3e} "
              f"{r['scale']:>10.3g} {r['std']:>10.3g} {r['rel']:>9.1e} {r['dec_diff']:>13.3e}  {'ok' if r['ok'] else 'FAIL'}")
    print()
    print("tapped features (official encode_image vs our backbone):")
    for r in rows:
        for label, d, scale in r["features"]:
            print(f"  {r['case']:<22} {label:<18} max|diff| {d:.3e}  (max|feature| {scale:.3g})")
    failed = [r["case"] for r in rows if not r["ok"]]
    if failed:
        print(f"\nFAIL: {', '.join(failed)} exceed the tolerance {args.tolerance:g}")
        return 1
    print(f"\nall {len(rows)} case(s) within {args.tolerance:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
