"""``declip protocol``: methods x train sets x test sets as jobs; grids, ID/OOD means, leaderboard."""
import os
import shutil

from ..errors import DeclipError
from .base import Command, add_common, add_flag, overrides

DESCRIPTION = ("Train each (method, train set) once, test on every test set, and write the grids, ID/OOD means, "
               "heat-maps and a leaderboard. Every training cell is one job (--executor). Rerun with the same "
               "arguments to continue a killed protocol (finished cells are kept, failed or missing ones run again).")


def add_protocol(p):
    from ..cluster import EXECUTORS
    from ..protocol import preset_names

    p.add_argument("--preset", choices=preset_names(), help="a named protocol (its methods and datasets; "
                                                            "--method/--train/--test replace its parts)")
    p.add_argument("--method", nargs="+", help="detector YAMLs or bundled names")
    p.add_argument("--train", nargs="+", help="train datasets (one cell per method and train set)")
    p.add_argument("--test", nargs="+", help="test datasets")
    add_flag(p, "--optional_tests", action="store_true",
             help="add the preset's optional test sets (ff-cross: Celeb-DF-v1, DeeperForensics-1.0)")
    p.add_argument("--sweep", metavar="KEY=V1,V2,...", help="one method per value of a config key "
                                                            "(feature_layer, decoder_type, backbone): Figure 3")
    p.add_argument("--out", help="the protocol folder (default: logs/protocol/<preset>)")
    add_flag(p, "--report_only", action="store_true",
             help="train nothing; write the outputs from the finished cells (the missing ones named)")
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="write no report.html (e.g. when `declip report` later combines several protocols)")
    p.add_argument("--status", metavar="OUT", nargs="?", const=PLAN,
                   help="print each cell's state (done, running, queued, failed with its job id and log, missing) of "
                        "the protocol folder OUT, and exit; without OUT: the plan of the other arguments (--preset, "
                        "--method, ...): its cells, and every dataset with the paths where it is expected and "
                        "whether they exist, nothing written")
    g = p.add_argument_group("jobs (docs/cluster.md)")
    g.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="local: each cell a subprocess on this machine; slurm: each cell a SLURM job (an array); "
                        "debug: every cell in this process (default: local)")
    add_flag(g, "--gpus_per_job", type=int, help="GPUs of one cell's job (one task per GPU; default 1 on SLURM, 1 "
                                                 "locally with CUDA)")
    add_flag(g, "--max_parallel", type=int,
             help="cells running at once (local default 1; SLURM: the array's %%N, default no cap)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--time", help="SLURM time limit of one job: minutes, HH:MM:SS or D-HH:MM:SS (required for "
                                  "slurm; a job that reaches it is requeued and resumes)")
    g.add_argument("--mem", help="memory of one job, e.g. 64G")
    add_flag(g, "--slurm_opt", action="append", metavar="KEY=VALUE",
             help="another SLURM option, passed to submitit (qos=high, account=proj, constraint=a100, "
                  "cpus_per_task=8, signal_delay_s=120, ...); repeatable")
    p.add_argument("--no-wait", dest="no_wait", action="store_true",
                   help="slurm: submit and return; the last job to finish writes the outputs")
    add_common(p)
    p.epilog = ("--opt METHOD:KEY=VALUE sets KEY for that method's cells only (e.g. --opt timesformer:encoder=... "
                "--opt clip_stan:depth=2); --opt KEY=VALUE for every method.")


PLAN = ""  # --status without a folder: the planning output


def run_protocol(args):
    from .. import cluster
    from .. import protocol as proto

    if args.status:
        print(cluster.format_status(proto.Protocol(args.status)))
        return 0
    out = args.out or os.path.join("logs", "protocol", args.preset or "custom")
    sweep = proto.parse_sweep(args.sweep) if args.sweep else None
    args.opt, per_method = proto.split_method_opts(args.opt)
    plan = proto.make_plan(args.preset, args.method, args.train, args.test, sweep, overrides(args),
                           optional_tests=args.optional_tests, method_overrides=per_method)
    if args.status == PLAN:
        print(format_plan(plan, out))
        return 0
    opts = cluster.job_options(args.executor, args.gpus_per_job, args.partition, args.time, args.mem, args.slurm_opt,
                               args.max_parallel, wait=not args.no_wait)
    opts.report = args.report  # --no-report: also for the SLURM job that writes the outputs
    if args.report_only:
        if not os.path.isfile(os.path.join(out, "protocol.json")):
            raise DeclipError(f"--report_only: {out} holds no protocol (no protocol.json); run the protocol first")
        p = proto.Protocol(out, plan)
        _print_protocol(p, p.finish(report=args.report), f"{len(p.plan['cells']) - len(p.missing())} done")
        return 0
    proto.check_plan(plan, args.sweep)  # every input checked: nothing is written before this passes
    cluster.check_executor_available(opts)
    new = not os.path.exists(out)
    p = proto.Protocol(out, plan)
    try:
        run = cluster.run_grid(p, opts)
    except cluster.SubmissionError:
        if new:  # the scheduler refused the first submission: the folder of a protocol that never started
            shutil.rmtree(out, ignore_errors=True)
        raise
    summary = (f"{len(run.kept)} kept, {len(run.finished)} trained now, {len(run.failed)} failed"
               + (f", {len(run.waiting)} queued or running" if run.waiting else ""))
    if run.waiting:
        print(f"protocol {out}: {len(p.plan['cells'])} cell(s): {summary}; the last job to finish writes the "
              f"outputs; see `declip protocol --status {out}`")
        return 0
    if p.cells_done():
        _print_protocol(p, p.finish(report=args.report), summary)
    _raise_problems(run, p, out)
    return 0


def _raise_problems(run, p, out):
    from .. import cluster

    problems = []
    if run.failed:
        recs = [cluster.read_record(out, cid) for cid in run.failed]
        problems.append(f"{len(run.failed)} of {len(p.plan['cells'])} cell(s) failed: " + "; ".join(
            f"{r['cell']} (job {r['job_id']}: {r['error']}; log {r['stderr']})" for r in recs)
            + "; rerun the same command to resubmit them")
    if run.unknown:
        problems.append(f"SLURM (sacct) does not know the job(s) of cell(s) {', '.join(run.unknown)}; if they no "
                        f"longer run, delete their records ({os.path.join(out, 'jobs', '<cell>.json')}) and rerun")
    if problems:
        raise DeclipError("; ".join(problems))


def format_plan(plan, out):
    """The planning output of ``--status`` without a folder: the cells (with their state when ``out`` holds this
    protocol) and every dataset with the paths where it is expected."""
    from .. import cluster
    from .. import protocol as proto
    from ..protocol_folder import is_protocol

    config = proto.cell_config(plan, plan["cells"][0])
    status = proto.data_status(plan, config)
    missing = [name for name, _, _, where in status if not all(ok for _, _, ok in where)]
    lines = [f"protocol {plan.get('preset') or 'custom'}: {len(plan['methods'])} method(s) x {len(plan['train'])} "
             f"train set(s) = {len(plan['cells'])} cell(s), {len(plan['test'])} test set(s); folder {out}",
             f"datasets: {len(status) - len(missing)} of {len(status)} found"
             + (f", missing: {', '.join(missing)}" if missing else "") + f" (folders from {proto.data_source(config)})",
             "", "| dataset | used for | state | expected at |", "|---|---|---|---|"]
    for name, roles, adapter, where in status:
        state = "found" if name not in missing else "missing: " + ", ".join(w for w, _, ok in where if not ok)
        paths = "; ".join(f"{what} {path}" + ("" if ok else " (missing)") for what, path, ok in where)
        lines.append(f"| {name} | {', '.join(roles)} | {state} | {paths or '(' + adapter + ': no fixed path)'} |")
    started = is_protocol(out)
    if started and proto.Protocol(out).plan.get("cells") == plan["cells"]:
        lines += ["", cluster.format_status(proto.Protocol(out)).rstrip("\n")]
    else:
        lines += ["", f"cells ({'not started' if not started else out + ' holds another protocol'}):", "",
                  "| cell | method | train | config |", "|---|---|---|---|"]
        lines += [f"| {c['id']} | {c['method']} | {c['train']} | {c['config']} |" for c in plan["cells"]]
    return "\n".join(lines) + "\n"


def _print_protocol(p, paths, summary):
    from ..protocol import format_grid

    out = p.out
    print(f"\nprotocol {out}: {len(p.plan['cells'])} cell(s): {summary}")
    if p.missing():
        print(f"not finished (not in the grids or the leaderboard): {', '.join(p.missing())}")
    metric = p.headline([m for m in p.metrics_present() if os.path.isfile(os.path.join(out, f"grid_{m}.csv"))])
    if metric:
        print(f"\n{metric} grid (rows: method | trained on; columns: tested on):\n")
        print(format_grid(out, metric))
    print("leaderboard:\n")
    with open(paths["leaderboard"][0], encoding="utf-8") as f:
        print(f.read())
    for kind in ("grids", "means", "heatmaps", "sweep", "report"):
        for path in paths.get(kind, []):
            print(f"{kind[:-1] if kind.endswith('s') else kind}: {path}")


COMMANDS = {"protocol": Command("methods x train sets x test sets: grids, ID/OOD means, heat-maps, leaderboard",
                                add_protocol, run_protocol, description=DESCRIPTION)}
