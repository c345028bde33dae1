"""The docs say what the code does: README.md and every docs/*.md, including pages added later.

* Every ``declip ...`` command line in a code block (also ``python -m declip_plugin ...`` and
  ``torchrun ... -m declip_plugin ...``) parses with the real parser (declip_plugin.cli.build_parser):
  its subcommand exists, every flag is one of that subcommand's, every choice is allowed, every flag
  has its value. What the docs write as a placeholder is read so:

  - ``<anything>`` stands for one value of the right type (``runs/declip_demo_<time>/ckpt_best.pth``,
    ``--videos <train> <val> <test>``): it is read as ``1``, which a string or number option takes;
  - ``a|b`` inside one word is "a or b": each alternative must parse;
  - ``[...]`` marks optional parts: the brackets are dropped, the parts kept;
  - ``...`` (a word, or a word ending in it) means "more arguments, as before": such a line is a
    fragment, and only the arguments that it leaves out (argparse's "the following arguments are
    required") are allowed to be missing;
  - after ``--`` come DeepfakeBench's own arguments (``declip dfb`` only, as cli.main splits them).

  Inline code that starts with ``declip <subcommand>`` in prose and tables is checked for its
  subcommand and the flags it names (an upper-case word, ``declip COMMAND --help``, is a placeholder).
* Every repository path the docs name (``scripts/...``, ``configs/...``, ``docs/...``,
  ``declip_plugin/...``, ``tests/...``; ``<x>`` and ``*`` as wildcards) exists, and every relative
  Markdown link resolves.
* Every bundled detector config is named in the docs (none is left out of its table).
"""
import argparse
import glob
import itertools
import os
import re
import shlex

import pytest

from declip_plugin import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
FENCE = re.compile(r"^(\s*)(```|~~~)\s*([\w+-]*)")
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")  # other fences (text, yaml, python...) hold no commands
PLACEHOLDER = re.compile(r"<[^<>\n]*>")
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"}
REPO_PATH = re.compile(r"(?<![\w./$~-])((?:scripts|configs|docs|declip_plugin|tests|\.ci)/[\w.*<>/+-]*[\w*>/])")
REQUIRED = "the following arguments are required"


def _read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def code_blocks(text):
    """[(first line number, block text)] of the shell code blocks: fenced ones without a language or
    tagged as shell (program output goes in ```text blocks), and 4-space-indented ones."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(m.group(2)):
                j += 1
            if m.group(3).lower() in SHELL_BLOCKS:
                out.append((i + 2, "\n".join(ln[len(m.group(1)):] for ln in lines[i + 1:j])))
            i = j + 1
            continue
        if lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            out.append((i + 1, "\n".join(ln[4:] for ln in lines[i:j])))
            i = j
            continue
        i += 1
    return out


def logical_lines(block):
    """Lines of a shell block with backslash continuations joined: [(offset, line)]."""
    out, buf, start = [], "", None
    for n, line in enumerate(block.splitlines()):
        start = n if start is None else start
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        out.append((start, buf + line))
        buf, start = "", None
    if buf:
        out.append((start, buf))
    return out


def declip_args(line):
    """The arguments of the declip command a shell line runs, or None when it runs no declip command."""
    text = PLACEHOLDER.sub("1", line.strip().removeprefix("$ "))
    try:
        words = shlex.split(text, comments=True)
    except ValueError:  # not shell (program output, a YAML line...)
        return None
    for k, w in enumerate(words):
        if w in SHELL_OPERATORS or w.startswith((">", "2>")):
            words = words[:k]
            break
    for k in range(len(words) - 1):
        if words[k] == "-m" and words[k + 1] == "declip_plugin":
            return words[k + 2:]
    k = 0
    while k < len(words) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[k]):
        k += 1  # VAR=value before the command
    if k < len(words) and os.path.basename(words[k]) == "declip":
        return words[k + 1:]
    return None


def doc_commands():
    """[(where, argv)] of every declip command line in a code block of README.md and docs/*.md."""
    out = []
    for rel in DOCS:
        for first, block in code_blocks(_read(rel)):
            for offset, line in logical_lines(block):
                argv = declip_args(line)
                if argv is not None:
                    out.append((f"{rel}:{first + offset}: {line.strip()[:100]}", argv))
    return out


class ParseError(Exception):
    pass


def _raising(parser):
    """``parser`` and every subparser raise ParseError instead of printing and exiting."""
    def error(message):
        raise ParseError(message)

    parser.error = error
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _raising(sub)
    return parser


@pytest.fixture(scope="module")
def parser():
    return _raising(cli.build_parser())


def _variants(words):
    """Each ``a|b`` word as each of its alternatives (the product over all such words)."""
    options = [w.split("|") if "|" in w and not w.startswith("-") and "=" not in w else [w] for w in words]
    return [list(v) for v in itertools.product(*options)]


def check_command(parser, argv):
    """None when ``argv`` (a docs command line's arguments) parses, else the reason."""
    argv = list(argv)
    tail = []
    if "--" in argv:
        i = argv.index("--")
        argv, tail = argv[:i], argv[i + 1:]
    words, fragment = [], False
    for w in argv:
        w = w.strip("[]") if w.startswith("[") or w.endswith("]") else w
        if w.endswith("..."):
            fragment = True
            w = w[:-3]
        if w:
            words.append(w)
    for variant in _variants(words):
        try:
            args = parser.parse_args(variant)
        except ParseError as e:
            if fragment and str(e).startswith(REQUIRED):
                continue
            return f"{' '.join(variant)}: {e}"
        except SystemExit as e:  # --help / --version
            if e.code:
                return f"{' '.join(variant)}: exit {e.code}"
            continue
        if tail and args.command != "dfb":
            return "arguments after `--` are only for `declip dfb`"
    return None


COMMANDS = doc_commands()


def test_the_docs_hold_command_lines_to_check():
    files = {where.split(":")[0] for where, _ in COMMANDS}
    assert "README.md" in files and len(COMMANDS) > 40


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[w.split(": ")[0] for w, _ in COMMANDS])
def test_every_declip_command_line_in_the_docs_parses(parser, where, argv):
    problem = check_command(parser, argv)
    assert problem is None, f"{where}\n  {problem}"


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def test_inline_declip_commands_name_real_subcommands_and_flags(parser):
    """`declip train --resume <run dir>` in prose: a real subcommand (``a/b`` lists several; a command
    the same page registers in its plugin example counts) and flags of that subcommand."""
    subs = _subparsers(parser)
    top = {o for a in parser._actions for o in a.option_strings}
    bad = []
    for rel in DOCS:
        text = _read(rel)
        registered = set(re.findall(r'register\("([\w-]+)", Command\(', text))
        for span in re.findall(r"`(declip [^`]+)`", text):
            words = PLACEHOLDER.sub("X", span).split()[1:]
            while words and words[0] in top:
                words = words[1:]
            if not words or words[0] == "..." or words[0].isupper():  # `declip COMMAND --help`: a placeholder
                continue
            names = words[0].split("/")
            unknown = [n for n in names if n not in subs and n not in registered]
            if unknown:
                bad.append(f"{rel}: `{span}`: no subcommand {', '.join(unknown)}")
                continue
            known = top | {o for n in names if n in subs for a in subs[n]._actions for o in a.option_strings}
            for w in words[1:]:
                if w == "--" or names[0] in registered:
                    break
                flag = w.strip("[]").split("=")[0]
                if flag.startswith("--") and flag not in known:
                    bad.append(f"{rel}: `{span}`: {words[0]} has no {flag}")
    assert not bad, "\n".join(bad)


def test_the_check_itself_catches_what_it_should(parser):
    assert check_command(parser, ["train", "--detector_path", "x"]) is None
    assert "unrecognized" in check_command(parser, ["train", "--no_such_flag", "1"])
    assert "invalid choice" in check_command(parser, ["no-such-command"])
    assert "invalid choice" in check_command(parser, ["dfb", "train|predict"])
    assert REQUIRED in check_command(parser, ["export-dfb", "demo-telea"])
    assert check_command(parser, ["export-dfb", "demo-telea", "..."]) is None  # a fragment
    assert "only for `declip dfb`" in check_command(parser, ["train", "--", "--x"])
    assert declip_args("OMP_NUM_THREADS=1 declip train --device cpu  # comment") == ["train", "--device", "cpu"]
    assert declip_args("torchrun --nproc_per_node 2 -m declip_plugin test --ddp") == ["test", "--ddp"]
    assert declip_args("declip leaderboard runs > table.md") == ["leaderboard", "runs"]
    assert declip_args("bash scripts/demo.sh") is None


def test_every_repository_path_the_docs_name_exists():
    bad = []
    for rel in DOCS:
        text = _read(rel)
        for path in set(REPO_PATH.findall(text)):
            pattern = PLACEHOLDER.sub("*", path.rstrip("/."))
            if not glob.glob(os.path.join(ROOT, pattern)):
                bad.append(f"{rel}: {path}")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            target = target.split("#")[0]
            if target and not re.match(r"[a-z]+:", target) and \
                    not os.path.exists(os.path.normpath(os.path.join(ROOT, os.path.dirname(rel), target))):
                bad.append(f"{rel}: link {target}")
    assert not bad, "paths the docs name that do not exist:\n" + "\n".join(sorted(bad))


def test_every_bundled_detector_config_is_in_the_docs():
    from declip_plugin.config import bundled_names

    text = "\n".join(_read(rel) for rel in DOCS)
    missing = [n for n in bundled_names("detector") if f"`{n}`" not in text]
    assert not missing, f"bundled detector configs the docs never name: {', '.join(missing)}"
