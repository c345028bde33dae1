"""Typed config schemas: dataclasses whose fields are the YAML keys, each key once with its default.

A field is declared with :func:`key` (default, allowed values and bounds, a description, and whether
only DeepfakeBench reads it); :func:`internal` declares a field that is no YAML key (what loading adds,
e.g. the file a config came from). :func:`from_mapping` builds the dataclass from a config dict,
checking types, allowed values and bounds (nested sections become their dataclasses); :func:`check_mapping`
validates a dict against one or more schemas (an unknown key names the closest valid one; a wrong value
names the key, the expected type and where the value came from). These checks are the only ones: code
that reads a parsed config trusts its values.
"""
import dataclasses
import typing

from ..errors import ConfigError
from ..registry import closest


def key(default=None, *, choices=None, doc="", dfb_only=False, factory=None, minimum=None, maximum=None,
        above=None, below=None, check=None, folder_name=False):
    """A schema field: ``default`` (or ``factory`` for mutable defaults), ``choices`` allowed values,
    ``minimum`` / ``maximum`` bounds of a number (``above`` / ``below``: bounds it must not reach),
    ``check`` a function of the value that returns what is wrong with it (or None), ``doc`` one line
    for the docs, ``dfb_only`` when only DeepfakeBench reads the key, ``folder_name`` when the value
    becomes part of one folder's name (:func:`check_folder_name`)."""
    meta = {"choices": tuple(choices) if choices else None, "doc": doc, "dfb_only": dfb_only,
            "minimum": minimum, "maximum": maximum, "above": above, "below": below, "check": check,
            "folder_name": folder_name}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def internal(default=None, *, factory=None, doc=""):
    """A field that is not a YAML key (no config file sets it; :func:`fields`, the checks and the docs
    skip it): what loading or the engine adds to a parsed config."""
    meta = {"internal": True, "doc": doc}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def fields(schema, internal=False):
    """``{name: dataclasses.Field}`` of the keys of a schema dataclass (with resolved type hints on
    ``.type``); its :func:`internal` fields too when ``internal``."""
    hints = typing.get_type_hints(schema)
    out = {}
    for f in dataclasses.fields(schema):
        if f.metadata.get("internal") and not internal:
            continue
        f.type = hints.get(f.name, f.type)
        out[f.name] = f
    return out


def nested_schema(tp):
    """The dataclass a field of type ``tp`` holds as a nested section (``Section``, ``Optional[Section]``,
    ``Union[Section, int, None]``), or None."""
    if dataclasses.is_dataclass(tp):
        return tp
    return next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), None)


def _allowed(tp):
    """The runtime types a type hint allows (typing.Any -> None, meaning anything)."""
    if tp is typing.Any or tp is object:
        return None
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        out = []
        for a in typing.get_args(tp):
            got = _allowed(a)
            if got is None:
                return None
            out.extend(got)
        return tuple(out)
    if origin in (list, tuple):
        return (list,)
    if origin is dict:
        return (dict,)
    if tp is type(None):
        return (type(None),)
    if tp is float:
        return (int, float)
    if dataclasses.is_dataclass(tp):
        return (dict,)
    return (tp,)


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
          dict: "a mapping", type(None): "null"}


def _type_name(types):
    return " or ".join(dict.fromkeys(_NAMES.get(t, t.__name__) for t in types))


def check_folder_name(name, value, where):
    """A value that becomes part of one folder's name (a run directory's): not empty, no path separator,
    not ``.`` or ``..``, no control character (a newline would end up in the folder's name)."""
    if isinstance(value, str) and (value.strip() in ("", ".", "..") or "/" in value or "\\" in value
                                   or not value.isprintable()):
        raise ConfigError(f"{where}: key {name!r} is {value!r}, but it names a folder inside log_dir: give a "
                          f"non-empty name without / or \\ or control characters (e.g. letters, digits, . _ + -)")


def check_value(name, value, field, where):
    """Raise ConfigError unless ``value`` fits ``field`` (type, allowed values, nested schema)."""
    types = _allowed(field.type)
    if types is not None:
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            raise ConfigError(f"{where}: key {name!r} must be {_type_name(types)}, got {value!r} "
                              f"({type(value).__name__})")
    nested = nested_schema(field.type)
    if nested is not None and isinstance(value, dict):
        check_mapping(value, [nested], where=f"{where}: {name}")
    if field.metadata.get("folder_name"):
        check_folder_name(name, value, where)
    choices = field.metadata.get("choices")
    if choices and value is not None and value not in choices:
        raise ConfigError(f"{where}: key {name!r} is {value!r}; allowed: {', '.join(map(str, choices))}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_bounds(name, value, field.metadata, where)
    problem = field.metadata["check"](value) if field.metadata.get("check") and value is not None else None
    if problem:
        raise ConfigError(f"{where}: key {name!r} {problem}, got {value!r}")


def _bounds_text(meta):
    """``at least 1``, ``between 0 and 1``, ``greater than 0``, ``greater than 0 and less than 1``; or ''."""
    lo, hi, above, below = (meta.get(k) for k in ("minimum", "maximum", "above", "below"))
    if lo is not None and hi is not None:
        return f"between {lo} and {hi}"
    low = f"at least {lo}" if lo is not None else f"greater than {above}" if above is not None else ""
    high = f"at most {hi}" if hi is not None else f"less than {below}" if below is not None else ""
    return " and ".join(x for x in (low, high) if x)


def _check_bounds(name, value, meta, where):
    lo, hi, above, below = (meta.get(k) for k in ("minimum", "maximum", "above", "below"))
    if ((lo is not None and value < lo) or (hi is not None and value > hi) or (above is not None and value <= above)
            or (below is not None and value >= below)):
        raise ConfigError(f"{where}: key {name!r} must be {_bounds_text(meta)}, got {value!r}")


def check_mapping(config, schemas, where="config", origins=None):
    """Validate every key of ``config`` against the union of ``schemas`` (dataclasses). Keys starting
    with ``_`` are bookkeeping and skipped. ``origins`` maps a top-level key to where its value came
    from (a file or the command line), for the message."""
    known = {}
    for s in schemas:
        known.update(fields(s))
    for name, value in config.items():
        if str(name).startswith("_"):
            continue
        at = (origins or {}).get(name, where)
        if name not in known:
            hint = closest(name, known)
            raise ConfigError(f"{at}: unknown key {name!r}" + (f"; did you mean {hint!r}?" if hint else "")
                              + " (remove it or fix its spelling)")
        check_value(name, value, known[name], at)
    return config


def from_mapping(schema, config, where="config"):
    """An instance of ``schema`` from the keys of ``config`` it declares (other keys ignored; a
    None value takes the default); values checked; a nested section (a mapping, or an instance
    already) becomes its dataclass."""
    kwargs = {}
    for name, f in fields(schema).items():
        if name in config and config[name] is not None:
            value = config[name]
            nested = nested_schema(f.type)
            if nested is not None and isinstance(value, nested):
                kwargs[name] = value
                continue
            check_value(name, value, f, where)
            if nested is not None and isinstance(value, dict):
                value = from_mapping(nested, value, where=f"{where}: {name}")
            kwargs[name] = value
    return schema(**kwargs)


def defaults(schema):
    """``{key: default}`` of a schema (nested schemas as dicts)."""
    out = {}
    for name, f in fields(schema).items():
        if f.default is not dataclasses.MISSING:
            out[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            v = f.default_factory()
            out[name] = dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
    return out


def _type_text(tp):
    types = _allowed(tp)
    if types is None:
        return "any"
    if float in types:
        types = tuple(t for t in types if t is not int)
    return " or ".join(dict.fromkeys({int: "int", float: "number", str: "str", bool: "bool", list: "list",
                                      dict: "mapping", type(None): "null"}.get(t, t.__name__) for t in types))


def markdown(schema, title, prefix=""):
    """A markdown table of a schema's keys: key, type, default, allowed values, who reads it."""
    rows, nested = [], []
    for name, f in fields(schema).items():
        default = f.default if f.default is not dataclasses.MISSING else "(see below)"
        choices = ", ".join(map(str, f.metadata.get("choices") or ())) or ""
        lo, hi = f.metadata.get("minimum"), f.metadata.get("maximum")
        if lo is not None or hi is not None:
            choices = f"{'' if lo is None else lo} .. {'' if hi is None else hi}".strip()
        elif f.metadata.get("above") is not None or f.metadata.get("below") is not None:
            choices = _bounds_text(f.metadata)
        reader = "DeepfakeBench only" if f.metadata.get("dfb_only") else ""
        doc = "; ".join(x for x in (f.metadata.get("doc"), reader) if x)
        rows.append(f"| `{prefix}{name}` | {_type_text(f.type)} | `{default}` | {choices} | {doc} |")
        sub = nested_schema(f.type)
        if sub is not None:
            nested.append(markdown(sub, f"{title}: `{prefix}{name}`", prefix=f"{prefix}{name}."))
    head = [f"### {title}", "", "| key | type | default | allowed | notes |", "|---|---|---|---|---|"]
    return "\n".join(head + rows) + "\n" + "".join("\n" + n for n in nested)
