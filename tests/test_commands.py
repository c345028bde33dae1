"""The ``declip`` commands (declip_plugin.commands): one registry filled by the plugins' hook, the
built-in commands like any plugin's, one flag spelling with its alias, DeepfakeBench's --task_target
and --no-save_feat."""
import importlib.metadata
import os
import sys
import types

import pytest

from declip_plugin import cli, plugins
from declip_plugin.commands import Command, add_flag
from declip_plugin.hookspecs import hookimpl
from test_plugins import FakeDist


def _hello_module(module_name, command_name="hello"):
    """An external plugin that adds a command: ``declip hello --greeting_word W NAME``."""
    mod = types.ModuleType(module_name)

    def add_arguments(p):
        p.add_argument("name")
        add_flag(p, "--greeting_word", default="hello")

    def run(args):
        print(f"{args.greeting_word}, {args.name}!")
        return 3  # the handler's status is the command's

    @hookimpl
    def deepfakebench_register_commands(register):
        register(command_name, Command("greet someone (a test plugin)", add_arguments, run))

    mod.deepfakebench_register_commands = deepfakebench_register_commands
    return mod


@pytest.fixture
def command_plugin(monkeypatch):
    def install(command_name="hello"):
        monkeypatch.setitem(sys.modules, "hello_plugin", _hello_module("hello_plugin", command_name))
        real = importlib.metadata.distributions
        fake = FakeDist("hello-plugin", {"hello": "hello_plugin"})
        monkeypatch.setattr(importlib.metadata, "distributions", lambda **kw: list(real(**kw)) + [fake])
        plugins.reset()

    yield install
    plugins.reset()


def _subcommands(parser):
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_a_plugin_command_runs_and_is_listed(command_plugin, capsys):
    command_plugin()
    assert cli.main(["hello", "--greeting-word", "hi", "Ada"]) == 3
    assert capsys.readouterr().out == "hi, Ada!\n"
    assert cli.main(["hello", "--greeting_word", "bye", "Bo"]) == 3
    assert capsys.readouterr().out == "bye, Bo!\n"
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "greet someone (a test plugin)" in capsys.readouterr().out
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    listed = out[out.index("commands:"):]
    assert "hello" in listed and "hello-plugin 1.0" in listed.split("hello ", 1)[1].splitlines()[0]


def test_a_plugin_command_cannot_take_a_builtin_name(command_plugin, caplog):
    """The plugin is disabled with one warning; `declip train` stays the built-in command."""
    command_plugin("train")
    parser = cli.build_parser()
    assert plugins.get_registry("commands").source("train").startswith(f"plugin {plugins.BUILTIN_PLUGIN_NAME!r}")
    assert "--detector_path" in _subcommands(parser)["train"].format_help()
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert line.startswith("plugin 'hello' (hello-plugin 1.0) is disabled: it registers command 'train', which plugin "
                           "'declip'")


def test_builtin_commands_come_only_through_the_hook():
    pm = plugins.create_plugin_manager(load_entrypoints=False)
    regs = plugins.build_registries(pm, ("commands",))["commands"]
    parser_commands = set(_subcommands(cli.build_parser()))
    assert set(regs.names()) == parser_commands  # nothing added beside the registry
    assert {"train", "test", "predict", "bench", "dfb", "protocol", "leaderboard"} <= parser_commands
    assert {regs.source(n) for n in regs.names()} == {f"plugin {plugins.BUILTIN_PLUGIN_NAME!r}"}


def test_every_flag_has_one_spelling_and_its_alias():
    """DeepfakeBench's spelling (words joined by `_` after an optional `no-`) first, and the all-hyphens
    spelling as an alias of the same option; no flag spelled only the other way."""
    bad = []
    for name, sub in _subcommands(cli.build_parser()).items():
        for action in sub._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            if not longs:
                continue
            canonical = longs[0]
            body = canonical[2:].removeprefix("no-")
            if "-" in body:
                bad.append(f"{name} {canonical}: hyphenated")
            alias = canonical.replace("_", "-")
            if alias != canonical and alias not in longs:
                bad.append(f"{name} {canonical}: no {alias} alias")
            extra = [o for o in longs[1:] if o != alias]
            if extra:
                bad.append(f"{name} {canonical}: other spellings {extra}")
    assert not bad, "\n".join(bad)


def test_hyphen_and_underscore_spellings_parse_alike():
    parser = cli.build_parser()
    a = parser.parse_args(["bench", "--batch-size", "3", "--n_images", "5"])
    b = parser.parse_args(["bench", "--batch_size", "3", "--n-images", "5"])
    assert (a.batch_size, a.n_images) == (b.batch_size, b.n_images) == (3, 5)


def test_dfb_flags_reach_the_engine(monkeypatch, tmp_path, capsys):
    """--no-save_feat and --task_target as DeepfakeBench's train.py takes them: into the run's config."""
    seen = {}

    def fake_train(detector, overrides, resume=None, weights_path=None):
        seen.update(overrides)
        return str(tmp_path)

    monkeypatch.setattr("declip_plugin.engine.run.train", fake_train)
    assert cli.main(["train", "--detector-path", "declip_demo", "--no-save-feat", "--task_target", "ff_c23"]) == 0
    assert seen["save_feat"] is False and seen["task_target"] == "ff_c23"
    seen.clear()
    assert cli.main(["train", "--detector_path", "declip_demo"]) == 0
    assert "save_feat" not in seen and "task_target" not in seen


def test_task_target_names_the_run_directory(tmp_path):
    """DeepfakeBench's train.py logs to <model_name>_<task_target>_<time>; ours to <name>_<task_target>_<time>."""
    from declip_plugin.config import RunConfig
    from declip_plugin.engine.run import _open_run
    from declip_plugin.run_folder import close_log as remove_log_file

    run_dir, handler = _open_run(RunConfig.of({"name": "mine", "task_target": "ff_c23", "log_dir": str(tmp_path)}), "train")
    remove_log_file(handler)
    assert os.path.basename(run_dir).startswith("mine_ff_c23_20")
    run_dir, handler = _open_run(RunConfig.of({"name": "mine", "log_dir": str(tmp_path)}), "train")
    remove_log_file(handler)
    assert os.path.basename(run_dir).startswith("mine_20")


def test_resume_refuses_task_target(capsys):
    assert cli.main(["train", "--resume", "somewhere", "--task_target", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume continues a run in its own directory") and err.count("\n") == 1


def _doc_command_lines(path, section=None):
    """The ``declip ...`` lines of the ```bash blocks of a doc (of its ``section`` heading only)."""
    import re

    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), path),
                encoding="utf-8").read()
    if section:
        text = text.split(section, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("declip ")]


@pytest.mark.parametrize("path,section", [("README.md", "## Your own videos and images"), ("docs/prepare.md", None)])
def test_the_commands_the_own_data_docs_give_parse(path, section):
    """Every `declip ...` line of the own-videos docs is a command the CLI accepts as written."""
    import shlex

    parser = cli.build_parser()
    lines = _doc_command_lines(path, section)
    assert any(line.startswith("declip predict ") for line in lines)
    for line in lines:
        try:
            argv = shlex.split(line, comments=True)[1:]
            parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)  # as cli.main splits it
        except SystemExit:
            pytest.fail(f"{path}: {line!r} does not parse")


# --- --debug: the traceback instead of the one line (the `world` is tests/conftest.py's) -------------------
def test_debug_raises_instead_of_one_line(world, tmp_path):
    from declip_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="train_batchSize"):
        cli.main(["--debug", "train", "--detector_path", str(world / "tiny.yaml"), "--opt", "train_batchSize=0",
                  "--log_dir", str(tmp_path / "logs")])


@pytest.mark.parametrize("argv", [["--help"], ["prepare", "--help"], ["make-demo-videos", "--help"],
                                  ["weights", "--help"], ["leaderboard", "--help"]])
def test_a_command_line_that_runs_no_detector_imports_no_torch(argv):
    """Every command line builds every command's parser; none of them may import torch or open_clip (about
    3.5 s here before `declip --help` printed anything, before `declip prepare` started on its videos)."""
    import subprocess

    code = ("import sys\nfrom declip_plugin.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", f"declip {' '.join(argv)} imported {out.stdout.splitlines()[-1]}"
