"""``declip leaderboard`` and ``declip report``: tables and the HTML report of finished runs."""
from ..errors import DeclipError
from .base import Command, add_flag


def add_leaderboard(p):
    p.add_argument("runs", nargs="+", help="run directories or log folders that contain them")
    p.add_argument("--format", choices=["md", "csv", "html", "png"], default="md", help="png needs --out")
    p.add_argument("--out")
    p.add_argument("--metrics", help="comma-separated metric names (default: those present)")
    add_flag(p, "--in_domain", help="comma-separated in-domain datasets (overrides run.json)")
    add_flag(p, "--by_task", action="store_true",
             help="one table per task: image localization, image detection, video detection")


def _write_or_print(text, out):
    if out:
        from ..atomicio import atomic_write_text

        atomic_write_text(out, text)
        print(f"leaderboard written to {out}")
    else:
        print(text)


def run_leaderboard(args):
    from ..atomicio import check_output_file
    from ..leaderboard import collect, render
    from ..protocol.folder import reference_blocks

    if args.out:
        check_output_file(args.out, "--out")
    if args.by_task:
        from ..leaderboard import render_by_task

        if args.format not in ("md", "html") or args.metrics or args.in_domain:
            raise DeclipError("--by_task writes one table per task in md or html; drop --metrics, --in_domain "
                              f"or --format {args.format}")
        _write_or_print("\n".join(f"### {task}\n\n{table}" if args.format == "md" else f"<h3>{task}</h3>\n{table}"
                                  for task, table in render_by_task(collect(args.runs), fmt=args.format,
                                                                    reference=reference_blocks(args.runs))), args.out)
        return 0
    text = render(collect(args.runs), fmt=args.format, metrics=args.metrics.split(",") if args.metrics else None,
                  in_domain=args.in_domain.split(",") if args.in_domain else None, out=args.out,
                  reference=reference_blocks(args.runs))
    if args.format == "png":
        print(f"leaderboard written to {text}")
    else:
        _write_or_print(text, args.out)
    return 0


def add_report(p):
    p.add_argument("dirs", nargs="+", help="run, protocol, robustness or log folders")
    p.add_argument("--out", help="the HTML file (default: <first folder>/report.html)")
    add_flag(p, "--summary_png", metavar="PNG", help="also write the report's summary figure (per task and method, "
                                                     "ID and OOD means) to this PNG file")


def run_report(args):
    from ..atomicio import check_output_file
    from ..report import write_report, write_summary_figure

    if args.summary_png:
        check_output_file(args.summary_png, "--summary_png")
    print(f"report: {write_report(args.dirs, out=args.out)}")
    if args.summary_png:
        print(f"summary figure: {write_summary_figure(args.dirs, args.summary_png)}")
    return 0


COMMANDS = {
    "leaderboard": Command("compare runs (ours and DeepfakeBench's) in one table", add_leaderboard, run_leaderboard),
    "report": Command("one self-contained HTML file for runs, protocols, robustness sweeps", add_report, run_report),
}
