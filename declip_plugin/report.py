"""`declip report DIR...`: one self-contained HTML file for a run, a protocol, a robustness sweep or a
set of runs.

Everything is inside the file: tables as HTML, figures and images as ``data:`` URIs, the style
inline; no script, no font, no link to anything outside. Sections:

* the summary figure, first: per task (image localization, image detection, video detection) and
  method, the ID and OOD means of the task's headline metric (metrics/base.py: IoU, AUC, video AUC),
  with a protocol preset's published reference figures hatched beside them;
* one leaderboard per task of every run found under the given folders (leaderboard.py), a preset's
  published rows marked as such;
* each producer's own section of its folders: a protocol's grids, heat-maps and sweep plots
  (protocol/section.py), a robustness sweep's curves (engine/robustness.py); this module assembles them;
* video strips: for each video run, one test video's frames over their Grad-CAM / attention-rollout
  maps (engine/explain.py), from the run's checkpoint;
* mask galleries: for each run and test set, its best, median and worst manipulated image by the
  per-image headline metric (IoU, per_image.csv), each as input | ground truth | prediction | overlay.
  The prediction is the run's saved mask (``save_masks``) when there is one, otherwise recomputed with
  the run's checkpoint (engine/predictor.py).
"""
import html
import logging
import os
import re

import cv2
import numpy as np

from .atomicio import atomic_write_text
from .errors import DeclipError
from .metrics.base import info_of, per_image_headline
from .protocol.folder import PLAN_FILE, finished_cells, is_protocol, reference_blocks
from .report_html import img_tag
from .run_folder import METRICS, RunDir, find_runs

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

def _producers():
    """The producers' report sections: ``section(folder) -> HTML`` ("" for a folder that is not theirs)."""
    from .engine.robustness import report_section as robustness
    from .protocol.section import report_section as protocol

    return (protocol, robustness)


# ---- mask galleries -----------------------------------------------------------------------------------

def pick_examples(rows, metric=None):
    """Best, median and worst manipulated images by their per-image ``metric`` (default: the per-image headline
    metric, metrics/base.py ``per_image_headline``: IoU): [(label, row index, row)]."""
    metric = metric or (per_image_headline(list(rows[0])) if rows else None)
    if metric is None:
        return []
    sign = 1.0 if info_of(metric).higher_is_better else -1.0
    scored = [(float(r[metric]), i, r) for i, r in enumerate(rows) if r.get("label") == "1" and r.get(metric) not in
              (None, "")]
    if not scored:
        return []
    scored.sort(key=lambda t: (-sign * t[0], t[1]))
    picks = [("best", scored[0]), ("median", scored[len(scored) // 2]), ("worst", scored[-1])]
    out, seen = [], set()
    for label, (_, i, r) in picks:
        if i not in seen:
            seen.add(i)
            out.append((label, i, r))
    return out


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


def _gallery_examples(tested, ds, rows, predictor):
    """The example strips of one test set (``ds``: its dataset, rebuilt); None when the run cannot predict."""
    from .data import images as dio

    metric = per_image_headline(list(rows[0]))
    info = info_of(metric)
    index = {str(s[0]): i for i, s in enumerate(ds.samples)}
    cells = []
    for label, row_i, row in pick_examples(rows, metric):
        i = index.get(row["path"])
        if i is None:
            continue
        item = ds[i]
        image = cv2.resize(dio.read_image(row["path"]), (256, 256), interpolation=cv2.INTER_AREA)
        gt = item["mask"][0].numpy() if item.get("mask") is not None else np.zeros((256, 256), np.float32)
        saved = tested.mask(row["path"], row_i)
        if os.path.isfile(saved):
            pred = cv2.imread(saved, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        else:
            pred = predictor.mask(item["image"])
            if pred is None:
                return None
        strip = example_strip(image, gt, pred)
        cells.append(f'<div class="ex">{html.escape(label)}: {html.escape(info.label)} {info.format(float(row[metric]))} '
                     f'({html.escape(os.path.basename(row["path"]))})<br>'
                     f'{img_tag(strip, f"{tested.dataset} {label}", mime="image/jpeg")}</div>')
    return cells


def _gallery_section(run_dir):
    from .data import build_dataset
    from .engine.predictor import RunPredictor

    run = RunDir(run_dir)
    config = run.read_config()
    predictor = RunPredictor(run_dir, config)
    parts = []
    for tested in run.tests():
        ds_name = tested.dataset
        rows = tested.read_per_image()
        if not pick_examples(rows):
            continue
        try:
            ds = build_dataset(ds_name, "test", config)  # with the run's own perturbation, if any
        except DeclipError as exc:
            parts.append(f'<p class="note">{html.escape(ds_name)}: no gallery ({html.escape(str(exc))})</p>')
            continue
        cells = _gallery_examples(tested, ds, rows, predictor)
        if cells is None:
            parts.append(f'<p class="note">{html.escape(ds_name)}: no gallery ({predictor.error})</p>')
            continue
        if cells:
            parts.append(f"<h3>{html.escape(ds_name)}</h3>" + "".join(cells))
    if not parts:
        return ""
    return (f"<h2>Masks: {html.escape(run.name())}</h2><p class=\"note\">{html.escape(run_dir)}; each example: input | "
            "ground truth | prediction | overlay (red: predicted, green: ground-truth outline)</p>" + "".join(parts))


# ---- video strips -------------------------------------------------------------------------------------

def _video_strip(run_dir):
    """One manipulated in-domain test video of a video run (``per_video.csv``): the frames over their maps."""
    from .engine.explain import explain_frames, frame_files
    from .engine.predictor import RunPredictor
    from .metrics.video import CSV_NAME as PER_VIDEO

    run = RunDir(run_dir)
    info = run.read_info()
    videos = [t.dataset for t in run.tests() if os.path.isfile(os.path.join(t.path, PER_VIDEO))]
    names = [d for d in info.get("in_domain") or [] if d in videos] + videos
    if not names:
        return ""
    fakes = [r["path"] for r in run.test(names[0]).read_per_image() if r.get("label") == "1"]
    folder = os.path.dirname(fakes[0]) if fakes else None
    if folder is None or not os.path.isdir(folder):
        return f'<p class="note">{html.escape(info.get("name", run_dir))}: no video strip (frames not found)</p>'
    config = run.read_config()
    predictor = RunPredictor(run_dir, config)
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
            + img_tag(buf.tobytes(), f"{names[0]} video strip", mime="image/jpeg"))


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
    figure = img_tag(summary_figure(None, panels), "summary: ID and OOD per method and task")
    sections = ['<h2>Summary</h2><p class="note">per task, each method\'s mean over the in-domain (ID) and '
                "out-of-domain (OOD) test sets of the task's headline metric</p>" + figure]
    tables = "".join(f"<h3>{html.escape(task)}</h3>" + table
                     for task, table in render_by_task(entries, fmt="html", reference=references))
    sections.append("<h2>Leaderboards</h2>" + tables)
    return sections


def _complete_results(folder):
    """``[folder]``, or for a protocol folder the run folders of its finished cells only: a cell stopped
    midway may hold some test sets' numbers, never shown."""
    if not is_protocol(folder):
        return [folder]
    return [c["run_dir"] for c in finished_cells(folder)]


def _folders_with_results(paths, produced):
    """The folders of ``paths`` with (complete) test results; a folder with none that no producer has a
    section of either (``produced``: {folder: [sections]}) is an error naming it (a report of nothing is no
    report)."""
    from .leaderboard import NoResultsError, collect

    out = []
    for p in paths:
        folders = _complete_results(p)
        if not folders:
            continue
        try:
            collect(folders)
        except NoResultsError:
            if produced[p]:
                continue
            raise DeclipError(f"report: nothing to report in {p}: no test results (test/<dataset>/{METRICS}), "
                              f"{PLAN_FILE} or robustness curves under it; give a run, protocol, robustness or "
                              f"log folder") from None
        out += folders
    return out


def _run_sections(runs):
    """The video strips and the mask galleries of ``runs`` (a run that cannot show them gets a note)."""
    quiet = logging.getLogger("declip_plugin")  # the galleries rebuild datasets and detectors: no log lines
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    sections = []
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
    return sections


def build_html(paths, title="declip report"):
    for p in paths:
        if not os.path.isdir(p):
            raise DeclipError(f"report: {p} is not a folder (give run, protocol, robustness or log folders)")
    produced = {p: [s for s in (section(p) for section in _producers()) if s] for p in paths}
    with_results = _folders_with_results(paths, produced)
    sections = _summary_and_leaderboards(with_results, paths) if with_results else []
    runs = []
    for p in paths:
        sections += produced[p]
        runs += [r for f in _complete_results(p) for r in find_runs(f)]
    sections += _run_sections(runs)
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
    with_results = _folders_with_results(paths, {p: [] for p in paths})
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
