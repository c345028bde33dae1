#!/usr/bin/env python
"""Numerical parity of our ``clip_enhanced`` tower with DeepFakesDetection's (HF CLIPVisionModel).

DeepFakesDetection's ``clip_enhanced`` feeds ``CLIPVisionModel(clip-vit-base-patch16).pooler_output``
to its head; ours runs the open_clip ViT-B/16 (QuickGELU) tower with its projection pruned. Both
get the same random weights (HF's LayerNorms perturbed away from 1/0 so that they matter), in fp32
on the CPU, and the pooled features of the same input are compared; the LayerNorm parameter counts
(what LayerNorm tuning trains) and the tower sizes are compared too:

    python scripts/parity_clip_enhanced.py [--tolerance 1e-4]

Needs ``transformers`` (DeepfakeBench's environment has it); nothing is downloaded. Exit status:
0 within tolerance and equal counts, 1 otherwise, 2 transformers missing.
"""
import argparse
import os
import sys
import tempfile

import torch

from declip_plugin import build_detector

WIDTH, LAYERS, HEADS = 768, 12, 12


def hf_tower(seed):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    model = CLIPVisionModel(CLIPVisionConfig(hidden_size=WIDTH, intermediate_size=4 * WIDTH, num_hidden_layers=LAYERS,
                                             num_attention_heads=HEADS, image_size=224, patch_size=16,
                                             hidden_act="quick_gelu")).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def hf_to_openai(hf_state):
    """HF CLIPVisionModel keys -> an OpenAI-format CLIP state dict (visual.*; a zero projection)."""
    s = {k.replace("vision_model.", "", 1): v for k, v in hf_state.items()}
    out = {"visual.conv1.weight": s["embeddings.patch_embedding.weight"],
           "visual.class_embedding": s["embeddings.class_embedding"],
           "visual.positional_embedding": s["embeddings.position_embedding.weight"],
           "visual.ln_pre.weight": s["pre_layrnorm.weight"], "visual.ln_pre.bias": s["pre_layrnorm.bias"],
           "visual.ln_post.weight": s["post_layernorm.weight"], "visual.ln_post.bias": s["post_layernorm.bias"],
           "visual.proj": torch.zeros(WIDTH, 512)}
    for i in range(LAYERS):
        a, b = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        out[b + "attn.in_proj_weight"] = torch.cat([s[a + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        out[b + "attn.in_proj_bias"] = torch.cat([s[a + f"self_attn.{x}_proj.bias"] for x in "qkv"])
        for theirs, ours in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
            for t in ("weight", "bias"):
                out[b + f"{ours}.{t}"] = s[a + f"{theirs}.{t}"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        hf = hf_tower(args.seed)
    except ImportError as exc:
        print(f"transformers is needed for this check: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "hf-as-openai.pt")
        torch.save(hf_to_openai(hf.state_dict()), path)
        det = build_detector({"model_name": "clip_enhanced", "backbone": "ViT-B/16", "pretrained": path}).eval()
    x = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed + 1))
    with torch.no_grad():
        ref = hf(pixel_values=x).pooler_output
        ours = det.features({"image": x})
    diff = (ours - ref).abs().max().item()
    hf_ln = sum(p.numel() for n, p in hf.named_parameters() if "layrnorm" in n or "layer_norm" in n or "layernorm" in n)
    our_ln = sum(p.numel() for m in det.backbone.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters())
    hf_total = sum(p.numel() for p in hf.parameters())
    our_total = sum(p.numel() for p in det.backbone.parameters())
    print(f"pooled feature: max |ours - HF pooler_output| = {diff:.3g} (largest value {ref.abs().max().item():.3g}, "
          f"tolerance {args.tolerance:g})")
    print(f"LayerNorm parameters: HF {hf_ln:,}, ours {our_ln:,}; tower parameters: HF {hf_total:,}, ours {our_total:,}")
    print(f"trainable with one linear head: {det.parameter_summary()['trainable']:,}")
    ok = diff <= args.tolerance and hf_ln == our_ln and hf_total == our_total
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
