"""``declip make-demo-data`` and ``declip make-demo-videos``: the procedural demo sets."""
from ..errors import DeclipError
from .base import Command, add_flag


def add_demo_data(p):
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128)


def run_demo_data(args):
    from ..atomicio import check_output_dir
    from ..data.demo import make_demo_data

    check_output_dir(args.out, "make-demo-data OUT")
    summary = make_demo_data(args.out, seed=args.seed, size=args.size)
    counts = "/".join(str(v) for v in summary["images_per_split"].values())
    print(f"demo data written to {args.out}: {summary['files']} files; methods {', '.join(summary['methods'])} "
          f"(datasets demo-<method>); train/valid/test images per method: {counts}")
    return 0


def add_demo_videos(p):
    from ..data.demo_video import METHODS

    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=16)
    add_flag(p, "--paths_base", default=None,
             help="write frame paths as ./<relative to this folder> (a DeepfakeBench checkout's root)")
    p.add_argument("--methods", nargs="+", default=["flicker"], choices=METHODS,
                   help="manipulations (default: flicker); each gets the dataset demo-video-<method>")
    p.add_argument("--videos", nargs=3, type=int, metavar=("TRAIN", "VAL", "TEST"),
                   help="videos per label and split (default: 100 20 40)")


def run_demo_videos(args):
    from ..data.demo_video import make_demo_videos

    counts = dict(zip(("n_train", "n_val", "n_test"), args.videos)) if args.videos else {}
    if any(n < 1 for n in counts.values()):
        raise DeclipError(f"--videos {' '.join(map(str, args.videos))}: give three positive counts (train val test)")
    m = make_demo_videos(args.out, seed=args.seed, size=args.size, n_frames=args.frames, paths_base=args.paths_base,
                         methods=args.methods, **counts)
    per = "/".join(str(v) for v in m["videos_per_label"].values())
    sets = ["demo-video"] + ([f"demo-video-{x}" for x in m["methods"]] if len(m["methods"]) > 1 else [])
    sets = ", ".join(sets)
    print(f"demo videos written to {args.out}: {m['files']} files in {m['seconds']}s; datasets {sets} "
          f"(DeepfakeBench JSON {m['json']}); train/val/test videos per label: {per}, {m['n_frames']} frames each")
    return 0


COMMANDS = {
    "make-demo-data": Command("write the procedural demo dataset (Dolos layout)", add_demo_data, run_demo_data),
    "make-demo-videos": Command("write the procedural demo video set (DeepfakeBench JSON layout)", add_demo_videos,
                                run_demo_videos),
}
