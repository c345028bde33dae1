"""`declip report DIR...`: one self-contained HTML file for a run, a protocol, a robustness sweep or a
set of runs.

Everything is inside the file: tables as HTML, figures and images as ``data:`` URIs, the style
inline; no script, no font, no link to anything outside. Sections:

* the summary figure, first: per task (image localization, image detection, video detection) and
  method, the ID and OOD means of the task's headline metric (IoU, AUC, video AUC), with a protocol
  preset's published reference figures hatched beside them;
* one leaderboard per task of every run found under the given folders (leaderboard.py), a preset's
  published rows marked as such;
* protocol folders: the grid of each metric with its ID / OOD means, the heat-maps, the sweep plots;
* robustness folders: the degradation curves;
* video strips: for each video run, one test video's frames over their Grad-CAM / attention-rollout
  maps (engine/explain.py), from the run's checkpoint;
* mask galleries: for each run and test set, its best, median and worst manipulated image by IoU
  (per_image.csv), each as input | ground truth | prediction | overlay. The prediction is the run's
  saved mask (``save_masks``) when there is one, otherwise recomputed with the run's checkpoint.
"""
import base64
import csv
import glob
import html
import json
import logging
import os
import re

import cv2
import numpy as np

from .errors import DeclipError
from .engine.rundir import atomic_write_text
from .protocol_folder import finished_cells, is_protocol, read_plan, reference_blocks

logger = logging.getLogger(__name__)

PANEL = 160
STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}h3{font-size:15px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
img{max-width:100%}.figs img{margin:4px;border:1px solid #ddd;vertical-align:top}
.ex{display:inline-block;margin:6px 10px 6px 0;font-size:11px}
.note{color:#666;font-size:12px}
"""


def data_uri(png_or_jpeg_bytes, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode(png_or_jpeg_bytes).decode("ascii")


def _img_tag(path_or_bytes, alt, mime="image/png", width=None):
    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    w = f' width="{width}"' if width else ""
    return f'<img src="{data_uri(data, mime)}" alt="{html.escape(alt)}"{w}>'


def _table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v, metric):
    from .metrics.base import info_of

    return info_of(metric).format(v)


# ---- what a folder is ---------------------------------------------------------------------------------

def find_runs(root):
    """Our run directories under ``root`` (run.json beside a test/ folder)."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        if "run.json" in files and os.path.isdir(os.path.join(folder, "test")):
            out.append(folder)
            dirs[:] = []
    return out


def _protocol_section(folder):
    parts = [f"<h2>Protocol: {html.escape(folder)}</h2>"]
    plan = read_plan(folder)
    parts.append(f'<p class="note">methods: {html.escape(", ".join(plan["methods"]))}; trained on: '
                 f'{html.escape(", ".join(plan["train"]))}; tested on: {html.escape(", ".join(plan["test"]))}. '
                 "ID: the test set from the train set's generator; OOD: the others.</p>")
    grid_path = os.path.join(folder, "grid.json")
    if os.path.isfile(grid_path):
        with open(grid_path, encoding="utf-8") as f:
            summary = json.load(f)
        tests = summary["test"]
        for metric, rows in summary["metrics"].items():
            parts.append(f"<h3>{html.escape(metric)}</h3>")
            parts.append(_table(["method", "trained on"] + tests + ["ID mean", "OOD mean"],
                                [[r["method"], r["train"]] + [_fmt(r["values"].get(t), metric) for t in tests]
                                 + [_fmt(r["id_mean"], metric), _fmt(r["ood_mean"], metric)] for r in rows]))
    figs = sorted(glob.glob(os.path.join(folder, "heatmap_*.png"))) + sorted(glob.glob(os.path.join(folder, "sweep_*.png")))
    if figs:
        parts.append("<h3>Heat-maps and sweeps</h3><div class=\"figs\">"
                     + "".join(_img_tag(p, os.path.basename(p)) for p in figs) + "</div>")
    return "\n".join(parts)


def _robustness_section(folder):
    figs = sorted(glob.glob(os.path.join(folder, "robustness_*.png")))
    parts = [f"<h2>Robustness: {html.escape(folder)}</h2>"]
    for c in sorted(glob.glob(os.path.join(folder, "robustness_*.csv"))):
        with open(c, encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if rows:
            parts.append(_table(rows[0], rows[1:]))
    parts.append("<div class=\"figs\">" + "".join(_img_tag(p, os.path.basename(p)) for p in figs) + "</div>")
    return "\n".join(parts)


# ---- mask galleries -----------------------------------------------------------------------------------

def pick_examples(rows):
    """Best, median and worst manipulated images by per-image IoU: [(label, row index, row)]."""
    scored = [(float(r["iou"]), i, r) for i, r in enumerate(rows) if r.get("label") == "1" and r.get("iou") not in
              (None, "")]
    if not scored:
        return []
    scored.sort(key=lambda t: (-t[0], t[1]))
    picks = [("best", scored[0]), ("median", scored[len(scored) // 2]), ("worst", scored[-1])]
    out, seen = [], set()
    for label, (_, i, r) in picks:
        if i not in seen:
            seen.add(i)
            out.append((label, i, r))
    return out


class _Predictor:
    """The run's detector, built once, for images whose mask was not saved."""

    def __init__(self, run_dir, config):
        self.run_dir, self.config, self.detector, self.error = run_dir, config, None, None

    def weights(self):
        best = os.path.join(self.run_dir, "ckpt_best.pth")
        if os.path.isfile(best):
            return best
        with open(os.path.join(self.run_dir, "run.json"), encoding="utf-8") as f:
            w = json.load(f).get("weights")
        return w if w and os.path.isfile(str(w)) else None

    def load(self):
        """The run's detector on the CPU, or None (``self.error`` says why)."""
        if self.detector is None and self.error is None:
            weights = self.weights()
            if weights is None:
                self.error = "no checkpoint in the run (ckpt_best.pth) and no saved masks"
            else:
                from . import build_detector

                cfg = {**self.config, "device": "cpu"}
                self.detector = build_detector(cfg, weights_path=weights).eval()
        return self.detector

    def __call__(self, image_tensor):
        import torch

        if self.load() is None:
            return None
        with torch.inference_mode():
            pred = self.detector({"image": image_tensor[None], "label": torch.zeros(1, dtype=torch.long)},
                                 inference=True)
        if pred.get("mask") is None:
            self.error = "the detector gives no mask"
            return None
        return torch.sigmoid(pred["mask"].float())[0, 0].numpy()


def _panel(img):
    return cv2.resize(img, (PANEL, PANEL), interpolation=cv2.INTER_AREA if img.shape[0] > PANEL else cv2.INTER_LINEAR)


def example_strip(image_rgb, gt, pred):
    """input | ground truth | prediction | overlay, one JPEG (RGB uint8 image, masks in [0, 1])."""
    inp = _panel(image_rgb)
    g = _panel((np.clip(gt, 0, 1) * 255).astype(np.uint8))
    p = _panel((np.clip(pred, 0, 1) * 255).astype(np.uint8))
    over = inp.astype(np.float32).copy()
    hit = p > 127
    over[hit] = 0.45 * over[hit] + 0.55 * np.array([255, 0, 0], np.float32)
    edge = cv2.morphologyEx((g > 127).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    over[edge] = (0, 255, 0)
    gap = np.full((PANEL, 4, 3), 255, np.uint8)
    strip = np.concatenate([inp, gap, np.repeat(g[..., None], 3, 2), gap, np.repeat(p[..., None], 3, 2), gap,
                            over.astype(np.uint8)], 1)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:  # pragma: no cover
        raise DeclipError("report: cannot encode an example image")
    return buf.tobytes()


def _gallery_section(run_dir):
    import yaml

    from .data import build_dataset
    from .engine.evaluator import mask_file_name

    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    predictor = _Predictor(run_dir, config)
    parts = []
    for ds_name in sorted(os.listdir(os.path.join(run_dir, "test"))):
        folder = os.path.join(run_dir, "test", ds_name)
        csv_path = os.path.join(folder, "per_image.csv")
        if not os.path.isfile(csv_path):
            continue
        with open(csv_path, encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        picks = pick_examples(rows)
        if not picks:
            continue
        try:
            ds = build_dataset(ds_name, "test", config)  # with the run's own perturbation, if any
        except DeclipError as exc:
            parts.append(f'<p class="note">{html.escape(ds_name)}: no gallery ({html.escape(str(exc))})</p>')
            continue
        index = {str(s[0]): i for i, s in enumerate(ds.samples)}
        cells = []
        for label, row_i, row in picks:
            i = index.get(row["path"])
            if i is None:
                continue
            item = ds[i]
            from .data import images as dio

            image = cv2.resize(dio.read_image(row["path"]), (256, 256), interpolation=cv2.INTER_AREA)
            gt = item["mask"][0].numpy() if item.get("mask") is not None else np.zeros((256, 256), np.float32)
            saved = os.path.join(folder, "masks", mask_file_name(row["path"], row_i))
            if os.path.isfile(saved):
                pred = cv2.imread(saved, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
            else:
                pred = predictor(item["image"])
                if pred is None:
                    parts.append(f'<p class="note">{html.escape(ds_name)}: no gallery ({predictor.error})</p>')
                    break
            strip = example_strip(image, gt, pred)
            cells.append(f'<div class="ex">{html.escape(label)}: IoU {float(row["iou"]):.1f} '
                         f'({html.escape(os.path.basename(row["path"]))})<br>'
                         f'{_img_tag(strip, f"{ds_name} {label}", mime="image/jpeg")}</div>')
        if cells:
            parts.append(f"<h3>{html.escape(ds_name)}</h3>" + "".join(cells))
    if not parts:
        return ""
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        name = json.load(f).get("name") or os.path.basename(run_dir)
    return (f"<h2>Masks: {html.escape(name)}</h2><p class=\"note\">{html.escape(run_dir)}; each example: input | "
            "ground truth | prediction | overlay (red: predicted, green: ground-truth outline)</p>" + "".join(parts))


# ---- video strips -------------------------------------------------------------------------------------

def _video_strip(run_dir):
    """One manipulated in-domain test video of a video run (``per_video.csv``): the frames over their maps."""
    import yaml

    from .engine.explain import explain_frames, frame_files

    test_dir = os.path.join(run_dir, "test")
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        info = json.load(f)
    names = [d for d in info.get("in_domain") or [] if os.path.isfile(os.path.join(test_dir, d, "per_video.csv"))]
    names += sorted(d for d in os.listdir(test_dir) if os.path.isfile(os.path.join(test_dir, d, "per_video.csv")))
    if not names:
        return ""
    with open(os.path.join(test_dir, names[0], "per_image.csv"), encoding="utf-8") as f:
        fakes = [r["path"] for r in csv.DictReader(f) if r.get("label") == "1"]
    folder = os.path.dirname(fakes[0]) if fakes else None
    if folder is None or not os.path.isdir(folder):
        return f'<p class="note">{html.escape(info.get("name", run_dir))}: no video strip (frames not found)</p>'
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        config = yaml.safe_load(f) or {}
    predictor = _Predictor(run_dir, config)
    detector = predictor.load()
    if detector is None:
        return f'<p class="note">{html.escape(info.get("name", run_dir))}: no video strip ({predictor.error})</p>'
    prob, strip, maps = explain_frames(detector, config, frame_files(folder, int(config.get("clip_size") or 8)))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:  # pragma: no cover
        raise DeclipError("report: cannot encode a video strip")
    return (f"<h3>{html.escape(info.get('name') or os.path.basename(run_dir))}</h3><p class=\"note\">"
            f"{html.escape(names[0])}, video {html.escape(os.path.basename(folder))} (manipulated): p(fake) "
            f"{prob:.3f}; Grad-CAM from {html.escape(maps['gradcam_method'])} gradients</p>"
            + _img_tag(buf.tobytes(), f"{names[0]} video strip", mime="image/jpeg"))


# ---- the report ---------------------------------------------------------------------------------------

def summary_panels(entries, references=()):
    """[(task, headline metric, [(method, ID mean, OOD mean, published)])] for the summary figure."""
    from .leaderboard import build_table, by_task, split_sets
    from .references import row_means

    panels = []
    for task, mine, (per_dataset, _) in by_task(entries):
        metric = per_dataset[0]
        methods, _, values, _ = build_table(mine, columns=((), (metric,)))
        rows = []
        for m in methods:
            idm, oodm = values.get((m, f"{metric} ID mean")), values.get((m, f"{metric} OOD mean"))
            if idm is None and oodm is None:
                idm = values.get((m, f"{metric} mean"))  # no in-domain split known: the plain mean
            rows.append((m, idm, oodm, False))
        id_sets, ood_sets = split_sets(mine)
        for ref in references:
            if ref.get("metric") == metric:
                label = f" ({ref['label']})" if ref.get("label") else ""  # drawn hatched: marked as published
                rows += [(name + label, *row_means(v, id_sets, ood_sets), True)
                         for name, v in (ref.get("rows") or {}).items()]
        panels.append((task, metric, rows))
    return panels


def _summary_and_leaderboards(with_results, paths):
    """The summary figure and the per-task leaderboards of the folders with results (a malformed result file
    is an error naming it, never a note in the report)."""
    from .leaderboard import collect, render_by_task
    from .plots import summary_figure

    entries = collect(list(with_results))
    references = reference_blocks(paths)
    panels = summary_panels(entries, references)
    figure = _img_tag(summary_figure(None, panels), "summary: ID and OOD per method and task")
    sections = ['<h2>Summary</h2><p class="note">per task, each method\'s mean over the in-domain (ID) and '
                "out-of-domain (OOD) test sets of the task's headline metric</p>" + figure]
    tables = "".join(f"<h3>{html.escape(task)}</h3>" + table
                     for task, table in render_by_task(entries, fmt="html", reference=references))
    sections.append("<h2>Leaderboards</h2>" + tables)
    return sections


def _is_robustness(folder):
    return bool(glob.glob(os.path.join(folder, "robustness_*.csv")))


def _complete_results(folder):
    """``[folder]``, or for a protocol folder the run folders of its finished cells only: a cell stopped
    midway may hold some test sets' numbers, never shown."""
    if not is_protocol(folder):
        return [folder]
    return [c["run_dir"] for c in finished_cells(folder)]


def _folders_with_results(paths):
    """The folders of ``paths`` with (complete) test results; a folder with none that is no protocol or
    robustness folder either is an error naming it (a report of nothing is no report)."""
    from .leaderboard import NoResultsError, collect

    out = []
    for p in paths:
        if not os.path.isdir(p):
            raise DeclipError(f"report: {p} is not a folder (give run, protocol, robustness or log folders)")
        folders = _complete_results(p)
        if not folders:
            continue
        try:
            collect(folders)
        except NoResultsError:
            if is_protocol(p) or _is_robustness(p):
                continue
            raise DeclipError(f"report: nothing to report in {p}: no test results (test/<dataset>/metrics.json), "
                              f"protocol.json or robustness curves under it; give a run, protocol, robustness or "
                              f"log folder") from None
        out += folders
    return out


def build_html(paths, title="declip report"):
    with_results = _folders_with_results(paths)
    sections = _summary_and_leaderboards(with_results, paths) if with_results else []
    runs = []
    for p in paths:
        if is_protocol(p):
            sections.append(_protocol_section(p))
        if _is_robustness(p):
            sections.append(_robustness_section(p))
        runs += [r for f in _complete_results(p) for r in find_runs(f)]
    quiet = logging.getLogger("declip_plugin")  # the galleries rebuild datasets and detectors: no log lines
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        strips = []
        for run in runs:
            try:
                strips.append(_video_strip(run))
            except (DeclipError, OSError) as exc:
                strips.append(f'<p class="note">{html.escape(run)}: no video strip ({html.escape(str(exc))})</p>')
        if any(strips):
            sections.append("<h2>Video maps</h2><p class=\"note\">per video method, one manipulated test video: its "
                            "frames (top), Grad-CAM (middle) and, for ViT towers, attention rollout (bottom)</p>"
                            + "".join(s for s in strips if s))
        for run in runs:
            try:
                sections.append(_gallery_section(run))
            except (DeclipError, OSError) as exc:
                sections.append(f'<p class="note">{html.escape(run)}: no gallery ({html.escape(str(exc))})</p>')
    finally:
        quiet.setLevel(level)
    sources = "".join(f"<li>{html.escape(os.path.abspath(p))}</li>" for p in paths)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1><ul class=\"note\">{sources}</ul>\n"
            + "\n".join(s for s in sections if s) + "\n</body></html>\n")


_EXTERNAL = re.compile(r"""(?:src|href|srcset|action|poster|data)\s*=\s*["']?(?!data:|#)[^\s"'>]+|url\(\s*["']?(?!data:)""",
                       re.IGNORECASE)


def external_references(text):
    """Attributes or CSS urls that point outside the file (the report must have none)."""
    return [m.group(0) for m in _EXTERNAL.finditer(text)]


def write_summary_figure(paths, out):
    """The report's summary figure alone, as the PNG file ``out`` (the README's picture, written by
    scripts/demo.sh with ``declip report --summary_png``); returns its path."""
    from .atomicio import check_output_file
    from .leaderboard import collect
    from .plots import summary_figure

    paths = [os.fspath(p) for p in paths]
    out = check_output_file(out, "report --summary_png")
    with_results = _folders_with_results(paths)
    if not with_results:
        raise DeclipError(f"report --summary_png: no test results under {', '.join(paths)} to draw")
    return summary_figure(out, summary_panels(collect(with_results), reference_blocks(paths)))


def write_report(paths, out=None, title=None):
    """Write the report and return its path (default: <first folder>/report.html)."""
    from .atomicio import check_output_file

    paths = [os.fspath(p) for p in paths]
    out = check_output_file(out, "report --out") if out else None
    if not os.path.isdir(paths[0]):
        raise DeclipError(f"report: {paths[0]} is not a folder (give run, protocol, robustness or log folders)")
    out = out or check_output_file(os.path.join(paths[0], "report.html"), "report file")
    text = build_html(paths, title or f"declip report: {', '.join(os.path.basename(os.path.normpath(p)) for p in paths)}")
    bad = external_references(text)
    if bad:  # pragma: no cover - a bug in this module
        raise DeclipError(f"report: external reference {bad[0]!r}")
    atomic_write_text(out, text)
    return out
