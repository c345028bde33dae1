"""``declip train``, ``declip test``, ``declip predict``: the embedded engine's runs (DeepfakeBench's
training/train.py and test.py flags)."""
import os
import sys

from ..errors import DeclipError
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
    p.add_argument("images", nargs="+", help="image files, or folders of a video's frames (clip detectors: always)")
    add_flag(p, "--weights_path", required=True, help="our checkpoint or an official DeCLIP one")
    add_flag(p, "--detector_path", help="detector YAML (default: read from the checkpoint)")
    p.add_argument("--out", default="predictions")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--explain", action="store_true",
                   help="also write a Grad-CAM overlay (and attention rollout for ViT towers) per image; for a "
                        "folder of frames, one strip PNG: the frames over their per-frame maps")
    add_common(p)


def run_predict(args):
    from ..engine.predict import predict

    records, errors = predict(args.images, args.weights_path, args.detector_path, args.out, args.threshold,
                              overrides(args), explain=args.explain)
    for r in records:
        line = f"{r['image']}: p(fake)={r['prob_fake']:.4f} ({r['label']})"
        if "mask" in r:
            line += f", {100 * r['manipulated_fraction']:.1f}% of pixels flagged -> {r['mask']}"
        maps = [r[k] for k in ("gradcam", "attention", "strip") if k in r]
        print(line + (f"; maps: {', '.join(maps)}" if maps else ""))
    for e in errors:
        print(f"error: {e['error']}", file=sys.stderr)  # the one place a bad image is reported
    print(f"summary: {os.path.join(args.out, 'predictions.json')}")
    return 1 if errors else 0


COMMANDS = {
    "train": Command("train a detector (DeepfakeBench's training/train.py flags)", add_train, run_train),
    "test": Command("evaluate a checkpoint (DeepfakeBench's training/test.py flags)", add_test, run_test),
    "predict": Command("masks and scores for single images; scores of videos (folders of frames)", add_predict,
                       run_predict),
}
