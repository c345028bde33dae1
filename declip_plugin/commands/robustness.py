"""``declip robustness``: a checkpoint tested under growing perturbations (degradation curves)."""
import os

from ..errors import DeclipError
from .base import Command, add_common, add_flag, overrides


def add_robustness(p):
    add_flag(p, "--detector_path", required=True)
    add_flag(p, "--weights_path", required=True)
    add_flag(p, "--test_dataset", nargs="+")
    p.add_argument("--kind", required=True, choices=["jpeg", "blur", "noise", "downscale"])
    p.add_argument("--levels", help="comma-separated levels (default: jpeg 90,70,50,30; blur 0.5,1,2,3; "
                                    "noise 2,5,10,20; downscale 1.5,2,3,4)")
    p.add_argument("--out", help="output folder (default: logs/robustness)")
    add_common(p)


def run_robustness(args):
    from ..engine.robustness import sweep

    levels = None
    if args.levels:
        try:
            levels = [float(v) for v in args.levels.split(",")]
        except ValueError:
            raise DeclipError(f"--levels {args.levels!r}: give comma-separated numbers, e.g. 90,70,50") from None
    out = args.out or os.path.join("logs", "robustness")
    result = sweep(args.detector_path, args.weights_path, args.kind, levels,
                   overrides(args, test_dataset=args.test_dataset), out_dir=out)
    print(f"curves: {result['csv']}")
    for p in result["plots"]:
        print(f"plot: {p}")
    return 0


COMMANDS = {"robustness": Command("test a checkpoint under growing perturbations: degradation curves",
                                  add_robustness, run_robustness)}
