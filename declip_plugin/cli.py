"""The ``declip`` command (also ``python -m declip_plugin``): the parser built from the registered
commands (declip_plugin.commands; plugins add theirs through ``deepfakebench_register_commands``),
logging, and the one-line errors.

Errors meant for the user end with a one-line cause and exit status 2; ``--debug`` shows the
traceback instead.
"""
import argparse
import logging
import sys

from . import __version__
from .errors import DeclipError, one_line

logger = logging.getLogger("declip_plugin.cli")


def _resolve_weights_name(args):
    """A --weights_path that names published weights (e.g. ``declip:<name>``) becomes the cached (or
    downloaded) file; see checkpoints.resolve_weights."""
    if getattr(args, "weights_path", None) is not None:
        from .checkpoints import resolve_weights  # torch: only for a command given weights

        args.weights_path = resolve_weights(args.weights_path)


def build_parser():
    """The ``declip`` parser: one subparser per command in the plugins' command registry
    (built-in ones included: declip_plugin.commands), each filled by its ``add_arguments``. A plugin
    command whose parser cannot be built disables its plugin (plugins.py), and the parser is built again."""
    from .plugins import PluginFailed, disable_plugin

    while True:
        try:
            return _parser()
        except PluginFailed as failed:
            disable_plugin(failed.name, failed.why, failed.exc)


def _parser():
    from .plugins import BUILTIN_PLUGIN_NAME, PluginFailed, get_registry

    parser = argparse.ArgumentParser(prog="declip", description="DeCLIP for DeepfakeBench: train, test, predict.")
    parser.add_argument("--version", action="version", version=f"declip-plugin {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (bars on a terminal, per-epoch / per-test-set lines otherwise)")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = get_registry("commands")
    for name, command in commands.items():
        try:
            p = sub.add_parser(name, help=command.help, description=command.description)
            command.add_arguments(p)
            p.set_defaults(func=command.run)
        except Exception as exc:  # noqa: BLE001 - a plugin's command; the built-in ones' failures are bugs
            if commands.owner(name) == BUILTIN_PLUGIN_NAME:
                raise
            raise PluginFailed(commands.owner(name), f"the parser of its command {name!r} cannot be built "
                                     f"({type(exc).__name__}: {exc})", exc) from exc
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    passthrough = []
    if "--" in argv:  # `declip dfb ... test -- <DeepfakeBench's own arguments>`
        i = argv.index("--")
        argv, passthrough = argv[:i], argv[i + 1:]
    debug = "--debug" in argv
    # before the parser: loading the plugins may warn (a broken plugin is disabled, plugins.py)
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    if not debug:
        logging.getLogger("PIL").setLevel(logging.WARNING)
    try:
        parser = build_parser()
    except DeclipError as exc:
        if debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if passthrough:
        if args.command != "dfb":
            parser.error("arguments after `--` are only for `declip dfb`")
        args.dfb_args = passthrough
    if args.quiet:
        from .progress import set_quiet

        set_quiet(True)
    from .engine.signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():  # SIGTERM ends a command like Ctrl-C: its clean-up runs
            _resolve_weights_name(args)
            return args.func(args)
    except DeclipError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file we were asked to read or write
        if args.debug or exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a run (engine/signals.py)
        signum = getattr(exc, "signum", None)
        print(str(exc) if signum else "interrupted", file=sys.stderr)
        return 128 + int(signum) if signum else 130


if __name__ == "__main__":
    raise SystemExit(main())
