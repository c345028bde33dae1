"""`declip protocol`: the paper's evaluation grid in one command.

Methods (detector configs, optionally each with overrides) x train datasets x test datasets: each
(method, train set) cell is trained once and tested on every test set; the results are gathered into,
per metric, a grid (CSV and JSON), the in-domain (ID) and out-of-domain (OOD) means, a heat-map PNG per
method (the paper's Figure 5), and a leaderboard. A sweep over one config key (for DeCLIP its feature
layer, decoder or backbone; any key) turns every method into one method per value and draws the paper's
Figure 3 (metric against the swept value, ID and OOD lines).

The package, one concept per module:

* :mod:`.presets` - the named protocols, kept as data in configs/protocol/*.yaml (DeCLIP's paper
  presets with its published figures, the demos, DeepFakesDetection's ff-cross);
* :mod:`.plan` - a plan from a preset and the command's choices (its cells), which test sets are
  in-domain, and the checks of everything a plan reads before anything is written;
* :mod:`.folder` - the protocol folder's layout, its readers and writers;
* :mod:`.cells` - running a cell, resuming an interrupted one (:class:`~.cells.Protocol`);
* :mod:`.outputs` - grids, means, heat-maps, the sweep plots, the leaderboard, the report;
* :mod:`.section` - the protocol's section of the HTML report;
* :mod:`.cluster` - each cell as one job of an executor (submitit: local, SLURM, debug).

The command (declip_plugin/commands/protocol.py) parses the option strings and drives these.
"""
