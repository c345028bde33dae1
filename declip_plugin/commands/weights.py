"""``declip weights list|fetch``: the official DeCLIP checkpoints by name
(declip_plugin/detectors/declip/official_weights.py).

It lives here, not in DeCLIP's package, because every ``declip`` command line builds every command's parser:
importing declip_plugin.detectors.declip would import torch and open_clip (about 3.5 s) before
``declip --help``, ``prepare`` or ``leaderboard`` could start."""
from ..errors import DeclipError
from ..hookspecs import Command


def add_weights(p):
    p.add_argument("action", choices=["list", "fetch"])
    p.add_argument("names", nargs="*", help="names such as declip:vit-l14_layer20_conv-20_lama (fetch)")


def run_weights(args):
    from ..detectors.declip import official_weights as ow

    if args.action == "list":
        rows = ow.listing()
        width = max(len(r[0]) for r in rows)
        print(f"{'name':{width}s}  {'detector config':16s}  status")
        for name, det, status, path in rows:
            print(f"{name:{width}s}  {det:16s}  {status}: {path}")
        print(f"\ncache: {ow.cache_dir()} ($DECLIP_WEIGHTS_DIR); use a name wherever --weights_path is taken")
        return 0
    if not args.names:
        raise DeclipError("declip weights fetch NAME...: give one or more names (declip weights list)")
    for name in args.names:
        print(f"{name}: {ow.resolve(name)}")
    return 0


COMMANDS = {"weights": Command("the official DeCLIP checkpoints by name (list, fetch)", add_weights, run_weights)}
