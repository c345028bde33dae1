"""The ``declip`` subcommands: one module per command family, each owning its parsers and handlers.

Every command, built-in or not, reaches the CLI the same way: a plugin's
``deepfakebench_register_commands(register)`` hook calls ``register(name, Command(...))``
(hookspecs.py); the built-in plugin (declip_plugin.builtin) registers the modules named in
:data:`BUILTIN` and declip_plugin.cli builds one subparser per registered command.
"""
import importlib

from .base import Command, add_flag

__all__ = ["BUILTIN", "Command", "add_flag", "register_builtin"]

# the built-in command families, named as strings: imported when the registry is built
BUILTIN = ("runs", "demo", "results", "dfb", "bench", "protocol", "robustness", "info", "prepare", "weights")


def register_builtin(register):
    for module in BUILTIN:
        for name, command in importlib.import_module(f"{__name__}.{module}").COMMANDS.items():
            register(name, command)
