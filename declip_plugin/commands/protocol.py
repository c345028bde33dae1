"""``declip protocol``: methods x train sets x test sets as jobs; grids, ID/OOD means, leaderboard.

The command parses its option strings (``--sweep KEY=V1,V2``, ``--opt METHOD:KEY=VALUE``, ``--time``,
``--mem``, ``--slurm_opt KEY=VALUE``) and checks how its flags combine; the protocol package
(declip_plugin/protocol/) gets plain values: a plan, and the jobs' :class:`~declip_plugin.protocol.cluster.JobOptions`.
"""
import os
import shutil

from ..errors import ConfigError, DeclipError
from .base import Command, add_common, add_flag, overrides

DESCRIPTION = ("Train each (method, train set) once, test on every test set, and write the grids, ID/OOD means, "
               "heat-maps and a leaderboard. Every training cell is one job (--executor). Rerun with the same "
               "arguments to continue a killed protocol (finished cells are kept, failed or missing ones run again).")


def add_protocol(p):
    from ..protocol.cluster import EXECUTORS
    from ..protocol.presets import preset_names

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


# ---- option strings --------------------------------------------------------------------------------------

def parse_sweep(text):
    """``--sweep key=v1,v2,...`` -> (key, [values]) with YAML-typed values."""
    import yaml

    if not text or "=" not in text:
        raise ConfigError(f"--sweep {text!r}: expected KEY=V1,V2,... (e.g. a detector key with values layer8,layer16,layer20)")
    key, _, values = text.partition("=")
    key = key.strip()
    vals = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
    if not key or len(vals) < 2:
        raise ConfigError(f"--sweep {text!r}: give one key and at least two values")
    return key, vals


def split_method_opts(items):
    """``--opt`` items -> (the plain ones, ``{method label: overrides}`` of the ``LABEL:KEY=VALUE`` ones)."""
    from ..config import merge, parse_overrides

    plain, scoped = [], {}
    for item in items or []:
        key = str(item).split("=", 1)[0]
        if ":" not in key:
            plain.append(item)
            continue
        label, _, rest = str(item).partition(":")
        if not label.strip():
            raise ConfigError(f"--opt {item!r}: expected METHOD:KEY=VALUE (e.g. clip_stan:depth=2) or KEY=VALUE")
        scoped[label.strip()] = merge(scoped.get(label.strip(), {}), parse_overrides([rest]))
    return plain, scoped


def parse_time(text):
    """``--time`` in SLURM's forms -> whole minutes (rounded up): ``MM``, ``MM:SS``, ``HH:MM:SS``,
    ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    t = str(text).strip()
    try:
        days, dash, rest = t.rpartition("-")
        parts = [int(p) for p in rest.split(":")]
        if any(p < 0 for p in parts) or len(parts) > 3 or (dash and not days.isdigit()):
            raise ValueError
        if dash:  # D-HH[:MM[:SS]]
            h, m, sec = (parts + [0, 0])[:3]
            h += int(days) * 24
        elif len(parts) == 3:  # HH:MM:SS
            h, m, sec = parts
        else:  # MM or MM:SS
            h, m, sec = 0, parts[0], (parts[1] if len(parts) > 1 else 0)
        minutes = h * 60 + m + (1 if sec else 0)
    except ValueError:
        raise ConfigError(f"--time {text!r}: give SLURM's forms: minutes (720), HH:MM:SS (12:00:00) or "
                          f"D-HH:MM:SS (1-00:00:00)") from None
    if minutes < 1:
        raise ConfigError(f"--time {text!r}: a job needs at least one minute")
    return minutes


def parse_mem(text):
    """``--mem``: ``64G``, ``64GB``, ``500M`` or a number of GB -> GB."""
    t = str(text).strip().upper().rstrip("B")
    scale = {"G": 1.0, "M": 1 / 1024, "T": 1024.0}.get(t[-1:], None) if t else None
    num = t[:-1] if scale is not None else t
    try:
        value = float(num) * (scale or 1.0)
    except ValueError:
        value = -1
    if not 0 < value < float("inf"):
        raise ConfigError(f"--mem {text!r}: give the memory of one job, e.g. 64G, 500M or 32 (GB)")
    return value


def parse_slurm_opts(items):
    """``--slurm_opt KEY=VALUE`` (repeatable) -> {key: value}; values parsed as YAML scalars; a key the command
    sets itself, or that neither sbatch nor submitit has, is refused (protocol/cluster.py ``check_slurm_key``)."""
    import yaml

    from ..protocol.cluster import check_slurm_key

    out = {}
    for item in items or []:
        key, sep, raw = str(item).partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--slurm_opt {item!r}: expected KEY=VALUE (e.g. qos=high, account=myproj, "
                              f"constraint=a100)")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            out[key] = raw
    for key in out:
        check_slurm_key(key)
    return out


def job_options(executor="local", gpus_per_job=None, partition=None, time=None, mem=None, slurm_opt=None,
                max_parallel=None, wait=True):
    """The jobs' options of the command's flags, every bad value or combination named before anything is
    written."""
    from ..protocol.cluster import EXECUTORS, JobOptions, check_local_gpus

    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    for flag, value, least in (("--gpus_per_job", gpus_per_job, 0), ("--max_parallel", max_parallel, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"{flag} {value!r}: give a whole number (at least {least})")
        if value is not None and executor == "debug":
            raise ConfigError(f"{flag} does not apply to --executor debug (every cell in this process, one by one)")
    opts = JobOptions(executor=executor, gpus_per_job=gpus_per_job, partition=partition,
                      time_min=parse_time(time) if time is not None else None,
                      mem_gb=parse_mem(mem) if mem is not None else None, slurm_opts=parse_slurm_opts(slurm_opt),
                      max_parallel=max_parallel, wait=wait)
    slurm_only = [f for f, v in (("--partition", partition), ("--mem", mem), ("--slurm_opt", slurm_opt)) if v]
    if executor != "slurm" and slurm_only:
        raise ConfigError(f"{', '.join(slurm_only)} only apply to --executor slurm (this is --executor {executor})")
    if executor == "slurm" and opts.time_min is None:
        raise ConfigError("--executor slurm needs --time (the time limit of one cell's job, e.g. --time 12:00:00); "
                          "a job that reaches it is requeued and continues from its last epoch")
    if executor != "slurm" and not wait:
        raise ConfigError(f"--no-wait applies to --executor slurm; --executor {executor} runs its jobs from this command")
    if executor == "local":
        check_local_gpus(opts)
    return opts


# ---- the command ---------------------------------------------------------------------------------------

def run_protocol(args):
    from ..protocol import cluster, folder, outputs
    from ..protocol.cells import Protocol
    from ..protocol.plan import check_plan, make_plan

    if args.status:
        print(cluster.format_status(Protocol(args.status)))
        return 0
    out = args.out or os.path.join("logs", "protocol", args.preset or "custom")
    sweep = parse_sweep(args.sweep) if args.sweep else None
    args.opt, per_method = split_method_opts(args.opt)
    plan = make_plan(args.preset, args.method, args.train, args.test, sweep, overrides(args),
                     optional_tests=args.optional_tests, method_overrides=per_method)
    if args.status == PLAN:
        print(format_plan(plan, out))
        return 0
    opts = job_options(args.executor, args.gpus_per_job, args.partition, args.time, args.mem, args.slurm_opt,
                       args.max_parallel, wait=not args.no_wait)
    opts.report = args.report  # --no-report: also for the SLURM job that writes the outputs
    if args.report_only:
        if not folder.is_protocol(out):
            raise DeclipError(f"--report_only: {out} holds no protocol (no {folder.PLAN_FILE}); run the protocol first")
        p = Protocol(out, plan)
        _print_protocol(p, outputs.finish(p, report=args.report), f"{len(p.cell_ids()) - len(p.missing())} done")
        return 0
    check_plan(plan, args.sweep)  # every input checked: nothing is written before this passes
    cluster.check_executor_available(opts)
    new = not os.path.exists(out)
    p = Protocol(out, plan)
    try:
        run = cluster.run_grid(p, opts)
    except cluster.SubmissionError:
        if new:  # the scheduler refused the first submission: the folder of a protocol that never started
            shutil.rmtree(out, ignore_errors=True)
        raise
    summary = (f"{len(run.kept)} kept, {len(run.finished)} trained now, {len(run.failed)} failed"
               + (f", {len(run.waiting)} queued or running" if run.waiting else ""))
    if run.waiting:
        print(f"protocol {out}: {len(p.cell_ids())} cell(s): {summary}; the last job to finish writes the "
              f"outputs; see `declip protocol --status {out}`")
        return 0
    if p.cells_done():
        _print_protocol(p, outputs.finish(p, report=args.report), summary)
    _raise_problems(run, p, out)
    return 0


def _raise_problems(run, p, out):
    from ..protocol import folder

    problems = []
    if run.failed:
        recs = [folder.read_record(out, cid) for cid in run.failed]
        problems.append(f"{len(run.failed)} of {len(p.cell_ids())} cell(s) failed: " + "; ".join(
            f"{r['cell']} (job {r['job_id']}: {r['error']}; log {r['stderr']})" for r in recs)
            + "; rerun the same command to resubmit them")
    if run.unknown:
        problems.append(f"SLURM (sacct) does not know the job(s) of cell(s) {', '.join(run.unknown)}; if they no "
                        f"longer run, delete their records ({folder.record_path(out, '<cell>')}) and rerun")
    if problems:
        raise DeclipError("; ".join(problems))


def format_plan(plan, out):
    """The planning output of ``--status`` without a folder: the cells (with their state when ``out`` holds this
    protocol) and every dataset with the paths where it is expected."""
    from ..protocol import cluster
    from ..protocol.cells import Protocol
    from ..protocol.folder import is_protocol
    from ..protocol.plan import cell_config, data_source, data_status

    config = cell_config(plan, plan["cells"][0])
    status = data_status(plan, config)
    missing = [name for name, _, _, where in status if not all(ok for _, _, ok in where)]
    lines = [f"protocol {plan.get('preset') or 'custom'}: {len(plan['methods'])} method(s) x {len(plan['train'])} "
             f"train set(s) = {len(plan['cells'])} cell(s), {len(plan['test'])} test set(s); folder {out}",
             f"datasets: {len(status) - len(missing)} of {len(status)} found"
             + (f", missing: {', '.join(missing)}" if missing else "") + f" (folders from {data_source(config)})",
             "", "| dataset | used for | state | expected at |", "|---|---|---|---|"]
    for name, roles, adapter, where in status:
        state = "found" if name not in missing else "missing: " + ", ".join(w for w, _, ok in where if not ok)
        paths = "; ".join(f"{what} {path}" + ("" if ok else " (missing)") for what, path, ok in where)
        lines.append(f"| {name} | {', '.join(roles)} | {state} | {paths or '(' + adapter + ': no fixed path)'} |")
    started = is_protocol(out)
    if started and Protocol(out).plan.get("cells") == plan["cells"]:
        lines += ["", cluster.format_status(Protocol(out)).rstrip("\n")]
    else:
        lines += ["", f"cells ({'not started' if not started else out + ' holds another protocol'}):", "",
                  "| cell | method | train | config |", "|---|---|---|---|"]
        lines += [f"| {c['id']} | {c['method']} | {c['train']} | {c['config']} |" for c in plan["cells"]]
    return "\n".join(lines) + "\n"


def _print_protocol(p, paths, summary):
    from ..protocol import folder, outputs

    out = p.out
    print(f"\nprotocol {out}: {len(p.cell_ids())} cell(s): {summary}")
    if p.missing():
        print(f"not finished (not in the grids or the leaderboard): {', '.join(p.missing())}")
    metric = outputs.headline(p, [m for m in outputs.metrics_present(p)
                                  if os.path.isfile(folder.grid_csv_path(out, m))])
    if metric:
        print(f"\n{metric} grid (rows: method | trained on; columns: tested on):\n")
        print(outputs.format_grid(out, metric))
    print("leaderboard:\n")
    with open(paths["leaderboard"][0], encoding="utf-8") as f:
        print(f.read())
    for kind in ("grids", "means", "heatmaps", "sweep", "report"):
        for path in paths.get(kind, []):
            print(f"{kind[:-1] if kind.endswith('s') else kind}: {path}")


COMMANDS = {"protocol": Command("methods x train sets x test sets: grids, ID/OOD means, heat-maps, leaderboard",
                                add_protocol, run_protocol, description=DESCRIPTION)}
