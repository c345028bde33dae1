"""A fake SLURM for tests: ``sbatch``, ``srun``, ``sacct``, ``squeue``, ``scancel``, ``scontrol`` on PATH
(what submitit calls, as its own tests fake them), run on this machine.

``sbatch --test-only SCRIPT`` accepts any job; ``sbatch SCRIPT`` fails with ``$FAKE_SLURM_REFUSE`` as
its error when that is set, else keeps a copy of the script as ``<state>/<id>.sbatch``, answers "Submitted batch job
<id>" and runs the script's array tasks one after the other in a detached process, with SLURM's
variables set; the script's ``srun`` line runs the command with srun's --output/--error. A task
listed in ``$FAKE_SLURM_FAIL`` (comma-separated array indices) fails as a lost node would: its
stderr log gets a slurmstepd line and sacct says NODE_FAIL. ``$FAKE_SLURM_PREEMPT`` = ``INDEX:GLOB``
preempts that task as SLURM does (USR2 to the task) once a file matches GLOB; ``scontrol requeue``
then runs it again under the same job id. ``sacct`` prints the states.
"""
import os
import shlex
import stat
import sys

_COMMON = r'''
import os, re, signal, subprocess, sys, time
STATE = os.environ["FAKE_SLURM_STATE"]
os.makedirs(STATE, exist_ok=True)

def put(job, state):
    with open(os.path.join(STATE, job + ".state.tmp"), "w") as f:
        f.write(state)
    os.replace(os.path.join(STATE, job + ".state.tmp"), os.path.join(STATE, job + ".state"))

def get(job):
    try:
        with open(os.path.join(STATE, job + ".state")) as f:
            return f.read().strip()
    except OSError:
        return None
'''

SBATCH = _COMMON + r'''
script = sys.argv[-1]
if "--test-only" in sys.argv:  # the scheduler's check of a job's options: nothing is submitted
    print("sbatch: Job 0 to start at 2026-01-01T00:00:00 using 1 processors on nodes fake in partition gpu",
          file=sys.stderr)
    sys.exit(0)
if os.environ.get("FAKE_SLURM_REFUSE"):  # a submission the scheduler refuses (after --test-only passed)
    print(f"sbatch: error: Batch job submission failed: {os.environ['FAKE_SLURM_REFUSE']}", file=sys.stderr)
    sys.exit(1)
text = open(script).read()
counter = os.path.join(STATE, "counter")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
jid = str(n)
open(os.path.join(STATE, jid + ".sbatch"), "w").write(text)
m = re.search(r"^#SBATCH --array=(\d+)-(\d+)", text, re.M)
tasks = [f"{jid}_{i}" for i in range(int(m.group(1)), int(m.group(2)) + 1)] if m else [jid]
for t in tasks:
    put(t, "PENDING")
runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_slurm_run.py")
subprocess.Popen([sys.executable, runner, os.path.join(STATE, jid + ".sbatch"), jid] + tasks,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 start_new_session=True)
print(f"Submitted batch job {jid}")
'''

RUN = _COMMON + r'''
import glob
script, jid, tasks = sys.argv[1], sys.argv[2], sys.argv[3:]
fail = {x for x in os.environ.get("FAKE_SLURM_FAIL", "").split(",") if x}
preempt_at, _, preempt_glob = os.environ.get("FAKE_SLURM_PREEMPT", "").partition(":")

def preempt_when_ready(t, proc):
    """Like SLURM's preemption (--signal=USR2): USR2 to the task once preempt_glob exists."""
    while proc.poll() is None:
        pid_file = os.path.join(STATE, t + ".pid")
        if glob.glob(preempt_glob) and os.path.exists(pid_file):
            os.kill(int(open(pid_file).read()), signal.SIGUSR2)
            open(os.path.join(STATE, t + ".preempted"), "w").write("1")
            return
        time.sleep(0.02)

for t in tasks:
    if get(t) == "CANCELLED":
        continue
    env = dict(os.environ, SLURM_JOB_ID=t.replace("_", "") if "_" in t else t, SLURM_NTASKS="1",
               SLURM_JOB_NUM_NODES="1", SLURM_NODEID="0", SLURM_PROCID="0", SLURM_LOCALID="0",
               SLURM_JOB_NODELIST="localhost", SLURMD_NODENAME="localhost", FAKE_SLURM_TASK=t)
    if "_" in t:
        env.update(SLURM_ARRAY_JOB_ID=jid, SLURM_ARRAY_TASK_ID=t.split("_")[1])
    put(t, "RUNNING")
    if t.split("_")[-1] in fail:
        err = re.search(r"--error (\S+)", open(script).read()).group(1)
        err = err.replace("%A", jid).replace("%a", t.split("_")[-1]).replace("%j", t).replace("%t", "0")
        os.makedirs(os.path.dirname(err), exist_ok=True)
        with open(err, "a") as f:
            f.write(f"slurmstepd: error: *** JOB {t} ON node07 CANCELLED DUE TO NODE FAILURE ***\n")
        put(t, "NODE_FAIL")
        continue
    while True:
        proc = subprocess.Popen(["bash", script], env=env)
        if t.split("_")[-1] == preempt_at and not os.path.exists(os.path.join(STATE, t + ".preempted")):
            preempt_when_ready(t, proc)
        rc = proc.wait()
        requeue = os.path.join(STATE, t + ".requeue")
        if os.path.exists(requeue):  # scontrol requeue: the same job id runs again
            os.remove(requeue)
            put(t, "PENDING")
            continue
        break
    with open(os.path.join(STATE, t + ".rc"), "w") as f:
        f.write(str(rc))
    put(t, "COMPLETED" if rc == 0 else "FAILED")
'''

SRUN = r'''
import os, subprocess, sys
args = sys.argv[1:]
out = err = None
while args and args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        value = args.pop(0)
        for k, v in (("%A", os.environ.get("SLURM_ARRAY_JOB_ID", "")), ("%a", os.environ.get("SLURM_ARRAY_TASK_ID", "")),
                     ("%j", os.environ.get("SLURM_JOB_ID", "")), ("%t", "0")):
            value = value.replace(k, v)
        if flag == "--output":
            out = value
        else:
            err = value
for p in (out, err):
    if p:
        os.makedirs(os.path.dirname(p), exist_ok=True)
fo = open(out, "a") if out else None
fe = open(err, "a") if err else None
proc = subprocess.Popen(args, stdout=fo, stderr=fe)
task = os.environ.get("FAKE_SLURM_TASK")
if task:
    open(os.path.join(os.environ["FAKE_SLURM_STATE"], task + ".pid"), "w").write(str(proc.pid))
sys.exit(proc.wait())
'''

SACCT = _COMMON + r'''
args = sys.argv[1:]
ids = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
print("JobID|State|NodeList")
for name in sorted(os.listdir(STATE)):
    if name.endswith(".state"):
        t = name[:-6]
        if t.split("_")[0] in ids:
            print(f"{t}|{get(t)}|localhost")
'''

SQUEUE = _COMMON + r'''
print("JOBID STATE")
for name in sorted(os.listdir(STATE)):
    if name.endswith(".state") and get(name[:-6]) in ("PENDING", "RUNNING"):
        print(name[:-6], get(name[:-6]))
'''

SCANCEL = _COMMON + r'''
for t in [a for a in sys.argv[1:] if not a.startswith("-")]:
    put(t, "CANCELLED")
'''

SCONTROL = _COMMON + r'''
if sys.argv[1:2] == ["requeue"]:
    for t in sys.argv[2:]:
        open(os.path.join(STATE, t + ".requeue"), "w").write("1")
        with open(os.path.join(STATE, "requeued"), "a") as f:
            f.write(t + "\n")
'''


def install(bin_dir):
    """Write the fake commands into ``bin_dir``; returns it (put it first on PATH, and set
    FAKE_SLURM_STATE to a folder for the jobs' states)."""
    os.makedirs(bin_dir, exist_ok=True)
    for name, body in (("sbatch", SBATCH), ("fake_slurm_run", RUN), ("srun", SRUN), ("sacct", SACCT),
                       ("squeue", SQUEUE), ("scancel", SCANCEL), ("scontrol", SCONTROL)):
        path = os.path.join(bin_dir, name)
        with open(path + ".py", "w") as f:
            f.write(body)
        with open(path, "w") as f:  # a sh wrapper: a long interpreter path in a shebang may not run
            f.write(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(path + '.py')} \"$@\"\n")
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir
