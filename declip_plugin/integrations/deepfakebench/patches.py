"""The few run-time wraps of the checkout's functions (in the child process only; no file changes).

Registering into ``DETECTOR`` (bootstrap.py) is DeepfakeBench's extension point; everything here
is the rest, kept small, and each wrapped function is checked against facts.WRAPPED before use:

* the host configs: the script's own ``open`` (a name in its module namespace only) serves the
  detector YAML and ``training/config/<mode>_config.yaml`` with the launcher's overrides already
  merged, so DeepfakeBench's own merge produces the config that runs - the one train.py logs to
  training.log and uses for its log folder. ``init_seed(config)`` (called right after the merge)
  then only checks that every override held and remembers the config;
* test.py: ``inference`` / ``test_one_dataset`` / ``test_epoch`` (localization metrics per test
  dataset, result files);
* train.py with localization: the Trainer's ``inference`` / ``test_one_dataset`` / ``test_epoch`` /
  ``save_metrics`` (localization metrics logged with its logger into training.log and written as
  localization_metrics.json beside each metric_dict_best.pickle it saves).
"""
import builtins
import inspect

from ...errors import DeclipError
from ... import deepfakebench_facts as facts
from ...run_folder import timestamp
from . import results

logger = results.logger


class BootstrapError(DeclipError):
    """A problem found by the child before (or as) the host script runs; reported by the parent."""


class HostState:
    """What the wraps share: the launcher's spec, the config that runs, our registrations."""

    def __init__(self, spec):
        self.spec = spec
        self.config = None
        self.time = timestamp()
        self.registry = None
        self.ours = {}


# ------------------------------------------------------------------------------ signatures
def parameters_of(fn):
    """Positional parameter names of ``fn`` (through decorators such as ``torch.no_grad()``)."""
    sig = inspect.signature(fn)
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in sig.parameters.values() if p.kind in kinds)


def check_objects(where, owner, expected, commit):
    """The loaded functions ``owner[name]`` (a dict) or ``owner.name`` (a class) have the parameters of
    ``expected`` ({name: params}); BootstrapError naming each that does not."""
    problems = []
    for name, params in expected.items():
        fn = owner.get(name) if isinstance(owner, dict) else getattr(owner, name, None)
        label = f"{name}({', '.join(params)})"
        if not callable(fn):
            problems.append(f"{where} has no {label}")
            continue
        try:
            found = parameters_of(fn)
        except (TypeError, ValueError):
            problems.append(f"{where}: the signature of {name} cannot be read")
            continue
        if found != tuple(params):
            problems.append(f"{where}: {name} now takes ({', '.join(found)}), expected {label}")
    if problems:
        raise BootstrapError(f"DeepfakeBench checkout (commit {commit}) differs from what `declip dfb` wraps (tested "
                             f"with {facts.TESTED_COMMIT}): {'; '.join(problems)}")


# ------------------------------------------------------------------------------ configs
def serve_configs(g, replacements):
    """Let the script's ``open`` read ``replacements[path]`` instead of ``path`` (exact strings: the
    host config path as the script writes it, the detector YAML path as passed)."""
    if not replacements:
        return

    def open(file, *args, **kwargs):  # noqa: A001 - the name the script calls
        if isinstance(file, str) and file in replacements:
            file = replacements[file]
        return builtins.open(file, *args, **kwargs)

    g["open"] = open


def _leaves(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _lookup(config, path):
    node = config
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def override_problems(config, overrides, label_dict):
    """Overrides that do not hold in ``config`` (the merged config), as messages."""
    problems = []
    for path, value in _leaves(overrides or {}):
        if path == ("label_dict",):
            continue
        ok, found = _lookup(config, path)
        if not ok or found != value:
            problems.append(f"{'.'.join(path)} is {found!r}, not the override {value!r}")
    have = config.get("label_dict") or {}
    problems += [f"label_dict lacks {k}" for k in (label_dict or {}) if k not in have]
    return problems


def wrap_init_seed(g, state):
    """``init_seed(config)``: check the overrides held, remember the config, then the original."""
    original = g["init_seed"]
    script = state.spec["script"]

    def init_seed(config, *args, **kwargs):
        problems = override_problems(config, state.spec.get("overrides"), state.spec.get("label_dict"))
        if problems:
            raise BootstrapError(f"{script} changed the config after its merge: {'; '.join(problems)}")
        state.config = config
        for name, cls in state.ours.items():
            got = _registry_get(state.registry, name)
            if got is not cls:
                raise BootstrapError(f"our detector {name!r} was replaced in DETECTOR by {got!r} after registration")
        return original(config, *args, **kwargs)

    init_seed.__wrapped__ = original
    g["init_seed"] = init_seed


def _registry_get(registry, name):
    try:
        return registry[name]
    except Exception:  # noqa: BLE001 - a foreign object; only compared
        return None


# ------------------------------------------------------------------------------ localization
class LocalizationReporter:
    """Accumulates our localization metrics per test dataset while the host evaluates."""

    def __init__(self, metric_cls):
        self.metric_cls = metric_cls
        self.current = None
        self.loader_keys = {}
        self.results = {}
        self.enabled = True
        self._noted = set()

    def note_once(self, key, msg, *args):
        if key not in self._noted:
            self._noted.add(key)
            logger.info(msg, *args)

    def begin(self, loader):
        key = self.loader_keys.get(id(loader))
        self.current = (key, self.metric_cls()) if self.enabled else None

    def end(self):
        if self.current is None:
            return None
        key, acc = self.current
        self.current = None
        if len(acc) == 0:
            return None
        result = {k: results.finite(v) for k, v in acc.compute().items()}
        if key is not None:
            self.results[key] = result
        return key, result

    def record(self, data_dict, predictions):
        if self.current is None or not isinstance(predictions, dict):
            return
        pred = predictions.get("mask")
        gt = data_dict.get("mask") if isinstance(data_dict, dict) else None
        if pred is None:
            self.note_once("nopred", "the model returns no 'mask': no localization metrics")
            return
        if gt is None:
            self.note_once("nogt", "the batches carry no ground-truth 'mask': no localization metrics")
            return
        try:
            self.current[1].update(pred.detach().float(), gt.detach(), data_dict.get("label"))
        except (ValueError, RuntimeError, TypeError) as e:  # never break the host's own evaluation
            key = self.current[0]
            self.current = None
            logger.error("localization metrics for %s are skipped: %s (prediction %s, ground truth %s)", key, e,
                         tuple(pred.shape), tuple(gt.shape))


def localization_on(state, config):
    return bool(state.spec.get("localization")) and bool((config or {}).get("with_mask"))


def patch_test_script(g, state, reporter):
    """Wrap test.py's inference / test_one_dataset / test_epoch (checked by the caller)."""
    orig_inference, orig_one, orig_epoch = g["inference"], g["test_one_dataset"], g["test_epoch"]

    def inference(model, data_dict, *args, **kwargs):
        predictions = orig_inference(model, data_dict, *args, **kwargs)
        reporter.record(data_dict, predictions)
        return predictions

    def test_one_dataset(model, data_loader, *args, **kwargs):
        reporter.enabled = localization_on(state, state.config)
        reporter.begin(data_loader)
        try:
            return orig_one(model, data_loader, *args, **kwargs)
        finally:
            reporter.end()

    def test_epoch(model, test_data_loaders, *args, **kwargs):
        reporter.loader_keys = {id(v): k for k, v in dict(test_data_loaders).items()}
        metrics = orig_epoch(model, test_data_loaders, *args, **kwargs)
        for key, result in reporter.results.items():
            results.print_table(key, result)
        base = state.spec.get("results_dir") or (state.config or {}).get("log_dir")
        if base:
            results.save_test_results(results.run_folder(base, state.config, state.time), state.spec, state.config,
                                      metrics, reporter.results)
        else:
            logger.warning("no results folder (neither --results-dir nor log_dir in the config): result files not written")
        return metrics

    for name, fn in (("inference", inference), ("test_one_dataset", test_one_dataset), ("test_epoch", test_epoch)):
        fn.__wrapped__ = g[name]
        g[name] = fn


def patch_trainer(trainer_cls, state, reporter):
    """Wrap the Trainer's inference / test_one_dataset / test_epoch / save_metrics (checked by the caller)."""
    names = tuple(facts.WRAPPED["train-localization"][f"{facts.TRAINER_FILE}::{facts.TRAINER_CLASS}"])
    orig_inference, orig_one, orig_epoch, orig_save = (getattr(trainer_cls, n) for n in names)

    def inference(self, data_dict, *args, **kwargs):
        predictions = orig_inference(self, data_dict, *args, **kwargs)
        reporter.record(data_dict, predictions)
        return predictions

    def test_one_dataset(self, data_loader, *args, **kwargs):
        reporter.enabled = localization_on(state, getattr(self, "config", None))
        reporter.begin(data_loader)
        try:
            return orig_one(self, data_loader, *args, **kwargs)
        finally:
            done = reporter.end()
            if done and done[0] is not None:
                (getattr(self, "logger", None) or logger).info(results.trainer_line(*done))

    def test_epoch(self, epoch, iteration, test_data_loaders, *args, **kwargs):
        reporter.loader_keys = {id(v): k for k, v in dict(test_data_loaders).items()}
        reporter.results = {}
        return orig_epoch(self, epoch, iteration, test_data_loaders, *args, **kwargs)

    def save_metrics(self, phase, metric_one_dataset, dataset_key, *args, **kwargs):
        out = orig_save(self, phase, metric_one_dataset, dataset_key, *args, **kwargs)
        result = reporter.results.get(dataset_key)
        if result is not None:
            results.save_trainer_localization(self.log_dir, phase, dataset_key, getattr(self, "config", None), result)
        return out

    for name, fn in zip(names, (inference, test_one_dataset, test_epoch, save_metrics)):
        fn.__wrapped__ = getattr(trainer_cls, name)
        setattr(trainer_cls, name, fn)
