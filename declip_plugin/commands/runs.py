"""``declip train``, ``declip test``, ``declip predict``: the embedded engine's runs (DeepfakeBench's
training/train.py and test.py flags)."""
import os
import sys

from ..errors import DeclipError
from ..media.faces import FACE_MODES
from .base import Command, add_common, add_flag, add_perturb, overrides


def add_train(p):
    add_flag(p, "--detector_path", help="detector YAML, or a bundled name (declip, declip_demo, ...); "
                                        "required unless --resume")
    add_flag(p, "--train_dataset", nargs="+")
    add_flag(p, "--test_dataset", nargs="+")
    add_flag(p, "--weights_path", help="initial weights (ours, official DeCLIP or a plain state dict)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last finished epoch")
    add_flag(p, "--no-save_ckpt", dest="no_save_ckpt", action="store_true", help="write no checkpoint")
    add_flag(p, "--no-save_feat", dest="no_save_feat", action="store_true",
             help="DeepfakeBench's: save no features (feat_best.npy); this engine never writes them")
    add_flag(p, "--task_target", default=None,
             help="DeepfakeBench's: the run directory is named <name>_<task_target>_<time>")
    add_flag(p, "--log_dir", help="where run directories go (default: the config's log_dir)")
    p.add_argument("--ddp", action="store_true", default=None,
                   help="DeepfakeBench's flag: one process per GPU, started by torchrun (docs/distributed.md)")
    add_flag(p, "--local_rank", type=int, default=None,
             help="accepted for torch.distributed.launch; LOCAL_RANK from the environment is used")
    add_common(p)


def run_train(args):
    from ..engine.run import train

    over = overrides(args, train_dataset=args.train_dataset, test_dataset=args.test_dataset,
                     save_ckpt=False if args.no_save_ckpt else None, save_feat=False if args.no_save_feat else None,
                     task_target=args.task_target, ddp=args.ddp)
    if not args.resume and not args.detector_path:
        raise DeclipError("train needs --detector_path (a YAML or a bundled name such as declip_demo), or --resume RUN_DIR")
    if args.resume and args.detector_path:
        raise DeclipError(f"--resume continues a run with its own config (config.yaml); drop --detector_path "
                          f"{args.detector_path!r} (--opt still applies)")
    if args.resume and (args.train_dataset or args.test_dataset):
        raise DeclipError("--resume continues a run with its own datasets (its config.yaml); drop --train_dataset/"
                          "--test_dataset (--opt still applies, e.g. --opt nEpochs=50 to extend it)")
    if args.resume and args.task_target:
        raise DeclipError(f"--resume continues a run in its own directory; drop --task_target {args.task_target!r}")
    print_results(train(args.detector_path, over, resume=args.resume, weights_path=args.weights_path))
    return 0


def add_test(p):
    add_flag(p, "--detector_path", required=True)
    add_flag(p, "--test_dataset", nargs="+")
    add_flag(p, "--weights_path", required=True)
    add_flag(p, "--log_dir")
    add_perturb(p)
    add_common(p)


def run_test(args):
    from ..engine.run import test

    print_results(test(args.detector_path, args.weights_path,
                       overrides(args, test_dataset=args.test_dataset, perturb=args.perturb)))
    return 0


def print_results(run_dir):
    from ..run_folder import RunDir

    print(f"\nrun directory: {run_dir}")
    if RunDir(run_dir).has_tests():
        print(f"results table: declip leaderboard {run_dir}")


def add_predict(p):
    p.add_argument("images", nargs="+", help="image files, video files (mp4, avi, mov, mkv, webm), folders of videos, "
                                             "or folders of a video's frames (clip detectors: no single images)")
    add_flag(p, "--weights_path", required=True, help="our checkpoint or an official DeCLIP one")
    add_flag(p, "--detector_path", help="detector YAML (default: read from the checkpoint)")
    p.add_argument("--out", default="predictions")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--explain", action="store_true",
                   help="also write a Grad-CAM overlay (and attention rollout for ViT towers) per image; for a "
                        "video or a folder of frames, one strip PNG: the frames over their per-frame maps")
    video = p.add_argument_group("videos", "how a video's frames are made; default: as the frames of the datasets "
                                           "the checkpoint was trained on (docs/prepare.md)")
    video.add_argument("--faces", choices=FACE_MODES,
                       help="dlib: DeepfakeBench's aligned face crop, as `declip prepare`; none: whole frames")
    video.add_argument("--resize", help="a resize policy (data/transforms.py): deepfakebench (INTER_CUBIC, as "
                                        "DeepfakeBench's loader) or declip (INTER_LINEAR)")
    video.add_argument("--mode", choices=["fixed_num_frames", "fixed_stride"],
                       help="frame sampling, as DeepfakeBench's preprocessing (default fixed_num_frames)")
    add_flag(video, "--num_frames", type=int, help="frames per video with fixed_num_frames (default 32)")
    video.add_argument("--stride", type=int, help="every N-th frame with fixed_stride (default 10)")
    add_common(p)


def _check_predict_args(args):
    for flag, value in (("--num_frames", args.num_frames), ("--stride", args.stride)):
        if value is not None and value < 1:
            raise DeclipError(f"{flag} {value}: must be at least 1")


def _prediction_line(r):
    line = f"{r['image']}: p(fake)={r['prob_fake']:.4f} ({r['label']})"
    if r.get("kind") == "video":
        line += f", the mean of {r['frames']} frame scores"
        if r["no_face"]:
            line += f" ({len(r['no_face'])} of {r['sampled']} sampled frames without a face left out)"
    if "mask" in r:
        line += f", {100 * r['manipulated_fraction']:.1f}% of pixels flagged -> {r['mask']}"
    elif r.get("kind") == "video" and "manipulated_fraction" in r:
        line += f", {100 * r['manipulated_fraction']:.1f}% of pixels flagged per frame (masks in its folder)"
    maps = [r[k] for k in ("gradcam", "attention", "strip") if k in r]
    return line + (f"; maps: {', '.join(maps)}" if maps else "")


def run_predict(args):
    from ..engine.predict import PREDICTIONS_CSV, PREDICTIONS_JSON, predict

    _check_predict_args(args)
    options = {k: getattr(args, k) for k in ("faces", "resize", "mode", "num_frames", "stride")}
    records, errors = predict(args.images, args.weights_path, args.detector_path, args.out, args.threshold,
                              overrides(args), explain=args.explain, video_options=options)
    for r in records:
        print(_prediction_line(r))
    for e in errors:
        print(f"error: {e['error']}", file=sys.stderr)  # the one place a bad input is reported
    if not records:
        print(f"nothing predicted: no predictions written to {args.out}", file=sys.stderr)
        return 2
    print(f"summary: {os.path.join(args.out, PREDICTIONS_JSON)}; one row per image, frame and video: "
          f"{os.path.join(args.out, PREDICTIONS_CSV)}")
    return 1 if errors else 0


COMMANDS = {
    "train": Command("train a detector (DeepfakeBench's training/train.py flags)", add_train, run_train),
    "test": Command("evaluate a checkpoint (DeepfakeBench's training/test.py flags)", add_test, run_test),
    "predict": Command("masks and scores for single images; scores of videos (video files, folders of videos or "
                       "of frames): per frame and per video", add_predict, run_predict),
}
