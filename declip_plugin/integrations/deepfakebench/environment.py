"""`declip dfb setup`: an environment in which a DeepfakeBench checkout (or a fork) and this plugin run.

DeepfakeBench documents Python 3.7 / torch 1.12 (its install.sh and Dockerfile); this plugin needs
Python >= 3.9 (open_clip >= 2.26.1), so it cannot enter that environment. :func:`setup_environment`
builds a virtual environment on the current interpreter instead:

* ``python -m venv DIR``, with a ``.pth`` file that puts the current interpreter's site-packages
  (torch - a CUDA build when one is installed -, open_clip, this package) *after* the new
  environment's own, so torch is reused and the pins below win;
* DeepfakeBench's requirements at the versions known to work with current torch (:data:`REQUIREMENTS`);
* what the checkout's scripts import beyond them (a fork's extra imports: found by following
  ``training/train.py`` and ``training/test.py`` through the checkout's own modules, see
  :func:`external_imports`), for the import names :data:`IMPORT_PACKAGES` knows.

Idempotent: a second call reuses the environment and installs only what is missing. The chosen
interpreter is recorded per checkout (:func:`recorded_python`), so `declip dfb` uses it.
"""
import ast
import json
import logging
import os
import subprocess
import sys
import sysconfig

from ...atomicio import atomic_write_text
from ...errors import ConfigError, DeclipError
from ... import deepfakebench_facts as facts
from .checkout import validate_checkout

logger = logging.getLogger(__name__)

MIN_PYTHON = (3, 9)
#: DeepfakeBench's requirements that install and run with current torch (torch, torchvision, timm,
#: scipy, scikit-learn, lmdb, pyyaml, tensorboard come from the current interpreter)
REQUIREMENTS = (
    "numpy==1.26.4",                     # imgaug uses np.sctypes (gone in numpy 2)
    "opencv-python==4.10.0.84",          # < 4.11: the last builds for numpy 1.x
    "opencv-python-headless==4.10.0.84",
    "albumentations==1.3.1",             # < 1.4: its IsotropicResize passes always_apply (2.x: every p becomes 0)
    "dlib-bin==20.0.1.post1",            # dataset/I2G_dataset.py imports dlib (a prebuilt wheel)
    "imgaug==0.4.0",
    "scikit-image==0.26.0",
    "efficientnet_pytorch==0.7.1",
    "einops==0.8.2",
    "fvcore==0.1.5.post20221221",
    "imageio==2.38.1",
    "kornia==0.9.0",
    "loralib==0.1.2",
    "transformers==5.23.0",
    "simplejson==4.3.0",
    "psutil==7.2.2",
    "imutils==0.5.4",                    # preprocessing/preprocess.py (tests compare our face crop with its own)
)
#: import name -> what to install when a checkout imports it and the environment lacks it (a fork's
#: extras; DeepFakesDetection: seaborn, tensorboardX, peft, pandas). Pins keep numpy < 2.
IMPORT_PACKAGES = {
    "seaborn": "seaborn==0.13.2", "tensorboardX": "tensorboardX==2.6.4", "peft": "peft==0.18.1",
    "pandas": "pandas<2.3", "matplotlib": "matplotlib", "sklearn": "scikit-learn", "skimage": "scikit-image",
    "yaml": "pyyaml", "PIL": "pillow", "cv2": "opencv-python==4.10.0.84", "dlib": "dlib-bin==20.0.1.post1",
    "lmdb": "lmdb", "scipy": "scipy", "tqdm": "tqdm", "timm": "timm", "imutils": "imutils", "filterpy": "filterpy",
}
STAMP = "declip-dfb-requirements.stamp"
REGISTRY_FILE = "dfb-environments.json"


# ----------------------------------------------------------------------------- what a checkout imports
def _module_file(base, parts):
    """The file of module ``parts`` under ``base`` (a .py file or a package's __init__.py), or None."""
    path = os.path.join(base, *parts)
    for candidate in (path + ".py", os.path.join(path, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _import_time_nodes(node):
    """The statements that run when the module is imported: not function bodies, not ``try`` bodies
    (an import there may be optional)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield child
        if isinstance(child, ast.Try):
            for part in (child.orelse, child.finalbody):
                for stmt in part:
                    yield stmt
                    yield from _import_time_nodes(stmt)
            continue
        yield from _import_time_nodes(child)


def _imports_of(path):
    """(absolute module names, (level, module, names) of relative imports) that run when ``path`` is
    imported."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return [], []
    absolute, relative = [], []
    for node in _import_time_nodes(tree):
        if isinstance(node, ast.Import):
            absolute += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level:
                relative.append((node.level, node.module, names))
            elif node.module:
                absolute += [node.module] + [f"{node.module}.{n}" for n in names]
    return absolute, relative


def _local_names(root):
    """Names of every folder and .py module in the checkout (a script may put any of them on sys.path)."""
    names = set()
    for _, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        names.update(dirs)
        names.update(f[:-3] for f in files if f.endswith(".py"))
    return names


def external_imports(root, scripts=None):
    """{top-level import name: first checkout file (relative) that imports it} of every module the
    checkout's scripts reach through its own modules (``training/`` is their import root)."""
    training = os.path.join(root, "training")
    todo = [os.path.join(root, s) for s in (scripts or facts.SCRIPTS.values())]
    seen, external, anywhere = set(), {}, _local_names(root)
    while todo:
        path = todo.pop()
        if path in seen or not os.path.isfile(path):
            continue
        seen.add(path)
        absolute, relative = _imports_of(path)
        for name in absolute:
            parts = name.split(".")
            local = _module_file(training, parts[:1]) or _module_file(root, parts[:1])
            if local is None:
                if parts[0] not in anywhere:  # else put on sys.path by the checkout itself (its slowfast)
                    external.setdefault(parts[0], os.path.relpath(path, root))
                continue
            base = training if _module_file(training, parts[:1]) else root
            todo += [f for f in (_module_file(base, parts[:i]) for i in range(1, len(parts) + 1)) if f]
        for level, module, names in relative:
            pkg = os.path.dirname(path)
            for _ in range(level - 1):
                pkg = os.path.dirname(pkg)
            parts = module.split(".") if module else []
            todo += [f for f in (_module_file(pkg, parts[:i]) for i in range(1, len(parts) + 1)) if f]
            todo += [f for f in (_module_file(pkg, parts + [n]) for n in names) if f]
    return external


def missing_imports(python, root):
    """{import name: checkout file} of the checkout's external imports ``python`` cannot find."""
    wanted = external_imports(root)
    python = os.path.abspath(python) if os.sep in python else python  # it runs from the checkout root
    probe = ("import importlib.util, json, sys\n"
             "names = json.loads(sys.argv[1])\n"
             "print(json.dumps([n for n in names if importlib.util.find_spec(n) is None]))")
    try:
        out = subprocess.run([python, "-c", probe, json.dumps(sorted(wanted))], capture_output=True, text=True,
                             timeout=300, cwd=root, env={**os.environ, "PYTHONPATH": os.path.join(root, "training")})
    except (OSError, subprocess.SubprocessError) as e:
        raise DeclipError(f"cannot start {python}: {e}") from None
    if out.returncode != 0:
        raise DeclipError(f"{python} cannot check the checkout's imports: {out.stderr.strip().splitlines()[-1:]}")
    return {n: wanted[n] for n in json.loads(out.stdout.strip().splitlines()[-1])}


def missing_imports_line(missing, python, root):
    """One line naming what ``python`` lacks for the checkout and what to do."""
    listed = ", ".join(f"{n} (imported by {f})" for n, f in sorted(missing.items()))
    return (f"the checkout {root} imports modules that {python} cannot find: {listed}; run `declip dfb setup "
            f"--bench_root {root}` (it installs DeepfakeBench's requirements and a fork's extra imports), or "
            f"pip install them into that environment")


# ----------------------------------------------------------------------------- the recorded interpreter
def _registry_path():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "declip", REGISTRY_FILE)


def _read_registry():
    try:
        with open(_registry_path(), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_python(root):
    """The interpreter `declip dfb setup` recorded for checkout ``root`` (None if none or gone)."""
    python = _read_registry().get(os.path.realpath(root))
    return python if python and os.path.isfile(python) else None


def record_python(root, python):
    data = _read_registry()
    data[os.path.realpath(root)] = python
    path = _registry_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    return path


# ----------------------------------------------------------------------------- building it
def default_venv(root):
    """``<checkout>-venv`` beside the checkout (nothing is written into the checkout itself)."""
    return os.path.join(os.path.dirname(root), os.path.basename(root) + "-venv")


def _venv_python(venv):
    return os.path.join(venv, "Scripts" if os.name == "nt" else "bin", "python.exe" if os.name == "nt" else "python")


def _run(cmd, what, log=None):
    """Run ``cmd``; DeclipError naming ``what`` and the log's last lines when it fails."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise DeclipError(f"{what}: cannot start {cmd[0]}: {e.strerror or e}") from None
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()][-1:]
        raise DeclipError(f"{what} failed (exit status {proc.returncode}): {' '.join(tail)}"
                          f"{f' (full output: {log})' if log else ''}")
    return proc.stdout


def _pip_install(python, specs, log):
    if specs:
        logger.info("installing into %s: %s", os.path.dirname(os.path.dirname(python)), " ".join(specs))
        _run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *specs],
             f"pip install {' '.join(specs)}", log)


def _host_site():
    """The current interpreter's site-packages (torch, open_clip, this package)."""
    return sysconfig.get_paths()["purelib"]


def _create_venv(venv, host_site):
    python = _venv_python(venv)
    if not os.path.isfile(python):
        logger.info("creating the virtual environment %s (Python %s)", venv, sys.version.split()[0])
        _run([sys.executable, "-m", "venv", venv], f"python -m venv {venv}")
    version, site = _run([python, "-c", "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); "
                                        "print(sysconfig.get_paths()['purelib'])"],
                         f"{python} (the environment)").split()
    if version != "%d.%d" % sys.version_info[:2]:
        raise ConfigError(f"--venv {venv} runs Python {version}, but the packages it would reuse (torch, this "
                          f"plugin) are installed for Python {sys.version.split()[0]}: choose another --venv folder")
    # after this environment's own site-packages (so numpy<2 etc. win), the current one's, with its
    # .pth files (an editable install of this package)
    atomic_write_text(os.path.join(site, "zz_declip_host_site.pth"), f"import site; site.addsitedir({host_site!r})\n")
    return python


def _report(python, root):
    probe = ("import numpy, torch, declip_plugin\n"
             "print(f'numpy {numpy.__version__} | torch {torch.__version__} (CUDA available: '\n"
             "      f'{torch.cuda.is_available()}) from {torch.__file__.rsplit(\"/torch/\", 1)[0]}')")
    return _run([python, "-c", probe], f"{python}: importing numpy, torch and declip_plugin").strip()


def setup_environment(bench_root=None, venv=None):
    """Build (or check) the environment for checkout ``bench_root``; returns a summary dict with
    ``python`` (its interpreter), ``installed`` (what this call installed) and ``report``."""
    if sys.version_info < MIN_PYTHON:
        raise ConfigError(f"declip dfb setup needs Python {'.'.join(map(str, MIN_PYTHON))}+ (open_clip and this "
                          f"package do); this is {sys.version.split()[0]}")
    root = validate_checkout(bench_root)["root"]
    venv = os.path.abspath(os.path.expanduser(str(venv or default_venv(root))))
    if os.path.exists(venv) and not os.path.isfile(_venv_python(venv)):
        raise ConfigError(f"--venv {venv} exists but is not a virtual environment (no {_venv_python(venv)}): "
                          f"choose another folder or remove it")
    host_site = _host_site()
    python = _create_venv(venv, host_site)
    log = os.path.join(venv, "declip-pip-install.log")
    stamp_path, want = os.path.join(venv, STAMP), "\n".join(REQUIREMENTS + (host_site,))
    installed = []
    try:
        with open(stamp_path, encoding="utf-8") as f:
            have = f.read()
    except OSError:
        have = None
    if have != want:
        _pip_install(python, list(REQUIREMENTS), log)
        atomic_write_text(stamp_path, want)
        installed += list(REQUIREMENTS)
    missing = missing_imports(python, root)
    extras = sorted({IMPORT_PACKAGES[n] for n in missing if n in IMPORT_PACKAGES})
    _pip_install(python, extras, log)
    installed += extras
    left = missing_imports(python, root) if extras else missing
    if left:
        raise DeclipError(missing_imports_line(left, python, root) + " (no known package provides them)")
    return {"root": root, "venv": venv, "python": python, "installed": installed, "extras": extras,
            "report": _report(python, root), "recorded": record_python(root, python)}
