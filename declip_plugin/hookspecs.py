"""Hook specifications of the ``deepfakebench`` plugin project.

A plugin is a module (or object) with ``@hookimpl`` functions, exposed through an entry point
in group ``deepfakebench``::

    [options.entry_points]
    deepfakebench =
        mydetector = my_package.plugin

    # my_package/plugin.py
    from declip_plugin.hookspecs import hookimpl

    @hookimpl
    def deepfakebench_register_detectors(register):
        register("my_detector", MyDetector)

The hooks' contract types live here too (:class:`Command`), on the package's lowest floor, so that a
plugin's module imports them without reaching up into the CLI.
"""
import dataclasses
from typing import Callable, Optional

import pluggy

PROJECT = "deepfakebench"
ENTRY_POINT_GROUP = "deepfakebench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``declip`` subcommand (:func:`deepfakebench_register_commands`): its one-line ``help``,
    ``add_arguments(parser)`` and ``run(args)`` (the exit status)."""

    help: str
    add_arguments: Callable
    run: Callable
    description: Optional[str] = None


@hookspec
def deepfakebench_register_detectors(register):
    """Register detector classes: ``register(model_name, cls)``; ``cls(config)`` builds one."""


@hookspec
def deepfakebench_register_datasets(register):
    """Register dataset adapters: ``register(adapter_name, cls)``; see declip_plugin.data."""


@hookspec
def deepfakebench_register_metrics(register):
    """Register metric accumulators: ``register(name, cls)``. The contract (declip_plugin/metrics/base.py):
    ``keys``; ``applies(detector, config)`` and ``from_config(config)`` (classmethods); per batch
    ``update_batch(data_dict, pred_dict)``; ``compute() -> {key: value}``; ``state()`` / ``from_state(state)`` /
    ``merge(other)`` (gathered over DDP ranks); optional ``per_sample()`` (per_image.csv columns) and
    ``write_files(folder)``; and ``describe``: one ``MetricInfo`` per key (direction, scale, family, the
    leaderboards, protocol grids and robustness curves that show it)."""


@hookspec
def deepfakebench_register_commands(register):
    """Register ``declip`` subcommands: ``register(name, Command(help, add_arguments, run))``
    (:class:`Command`, also importable from declip_plugin.commands): ``add_arguments(parser)`` fills the
    subcommand's argparse parser, ``run(args)`` handles the parsed arguments and returns the exit status."""
