"""``declip bench``: reference vs optimized images/s and peak memory of a detector (declip_plugin/bench/)."""
import json
import os

from ..errors import ConfigError
from .base import Command, add_flag


def add_bench(p):
    p.add_argument("detector", nargs="?", default=None,
                   help="detector YAML or bundled name (default: declip = ViT-L/14 layer20 + conv-20; with --quick "
                        "declip_quick, the tiny ViT + conv-4)")
    add_flag(p, "--batch_size", type=int, default=64)
    add_flag(p, "--n_images", type=int, default=256, help="measured images per configuration (rounded up to "
                                                          "whole batches)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up batches per configuration (default 1; use 3+ "
                                                          "with --compile)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--modes", default="inference,train",
                   help="comma-separated: inference, train, components (a detector's reference parts on their own)")
    p.add_argument("--quick", action="store_true", help="CI-sized: batch 1, 2 images (and declip_quick by default)")
    p.add_argument("--compile", action="store_true", help="Module.compile the detector's fast path (optimized only)")
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (e.g. --opt precision=fp32 --opt channels_last=false)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")


def run_bench(args):
    from ..atomicio import atomic_write_bytes
    from ..bench import run_bench as measure
    from ..config import parse_overrides

    if args.json and os.path.isdir(args.json):
        raise ConfigError(f"--json {args.json!r} is a folder: give a file path")
    result = measure(args.detector, batch_size=args.batch_size, n_images=args.n_images, device=args.device,
                     modes=args.modes, quick=args.quick, overrides=parse_overrides(args.opt),
                     compile=True if args.compile else None, warmup=args.warmup)
    print(result["table"])
    if args.json:
        atomic_write_bytes(args.json, (json.dumps(result, indent=2) + "\n").encode("utf-8"))
        print(f"results written to {args.json}")
    return 0


COMMANDS = {"bench": Command("reference vs optimized images/s and peak memory of a detector", add_bench, run_bench)}
