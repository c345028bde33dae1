"""What a ``declip`` subcommand is, and the argument helpers the built-in ones share.

A command is registered by a plugin (built-in or external) through the hook
``deepfakebench_register_commands(register)`` (hookspecs.py)::

    register("hello", Command(help="say hello", add_arguments=add, run=run))

``add_arguments(parser)`` fills the subcommand's argparse parser; ``run(args)`` is called with the
parsed arguments and returns the exit status. Errors meant for the user are DeclipErrors (one line).

Flag spelling: DeepfakeBench's flags as DeepfakeBench spells them (``--detector_path``,
``--no-save_ckpt``); every other multi-word flag the same way, words joined by ``_`` after an optional
``no-``. :func:`add_flag` adds the all-hyphens spelling (``--batch-size``) as an alias of the same
option, so both are accepted and help shows both.
"""
from ..hookspecs import Command  # noqa: F401 - the contract type lives with the hooks (the lowest floor)


def hyphen_alias(flag):
    """``--batch_size`` -> ``--batch-size``; None when the flag has no other spelling."""
    alias = flag.replace("_", "-")
    return alias if flag.startswith("--") and alias != flag else None


def add_flag(parser, flag, *more, **kwargs):
    """``parser.add_argument(flag, ...)`` plus the hyphen spelling of ``flag`` as an alias."""
    alias = hyphen_alias(flag)
    names = [flag] + ([alias] if alias else []) + list(more)
    if alias and "dest" not in kwargs and not flag.startswith("--no-"):
        kwargs["dest"] = flag[2:]
    return parser.add_argument(*names, **kwargs)


def add_dfb_config(p):
    add_flag(p, "--dfb_config", help="DeepfakeBench's training/config/train_config.yaml (or test_config.yaml, or "
                                     "its checkout folder): read its datasets where its preprocessing left them "
                                     "(dataset_json_folder, rgb_dir, lmdb, lmdb_dir, label_dict)")


def add_common(p):
    """--opt, --device, --data_root, --dfb_config: the config overrides of the commands that run a detector."""
    p.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (YAML value; dotted keys for nested ones, e.g. optimizer.adam.lr=1e-4)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    add_flag(p, "--data_root", help="root of the dataset folders named in configs/dataset (default: "
                                    "$DECLIP_DATA_ROOT or ./datasets)")
    add_dfb_config(p)


def add_perturb(p):
    p.add_argument("--perturb", metavar="KIND=VALUE", help="test-time perturbation of the images only: jpeg=Q, "
                                                           "blur=SIGMA, noise=SIGMA, downscale=F (comma-joined)")


def overrides(args, **extra):
    """The config overrides of ``args``: --opt, the common flags, then ``extra`` (None values left out)."""
    from ..config import parse_overrides

    out = parse_overrides(args.opt)
    for key in ("device", "data_root", "log_dir", "dfb_config"):
        if getattr(args, key, None):
            out[key] = getattr(args, key)
    for k, v in extra.items():
        if v is not None:
            out[k] = v
    return out
