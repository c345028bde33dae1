"""Name -> object registries filled by plugins (see hookspecs.py)."""
import difflib

from .errors import RegistryError


def closest(name, choices):
    """The closest match of ``name`` among ``choices`` (or None)."""
    found = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.4)
    return found[0] if found else None


class Registry:
    """A mapping of names to objects that remembers which plugin registered each name."""

    def __init__(self, kind):
        self.kind = kind
        self._items = {}
        self._sources = {}
        self._owners = {}

    def register(self, name, obj, source="<unknown>", owner=None):
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r} from {source}")
        if name in self._items:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice: by {self._sources[name]} and by {source}; "
                f"uninstall one of the plugins or rename one of them"
            )
        self._items[name] = obj
        self._sources[name] = source
        self._owners[name] = owner

    def owner(self, name):
        """The name of the plugin that registered ``name`` (None when registered directly)."""
        self.get(name)
        return self._owners[name]

    def get(self, name):
        try:
            return self._items[name]
        except KeyError:
            pass
        hint = closest(name, self._items)
        msg = f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._items)) or '(none)'}"
        if hint:
            msg += f" (did you mean {hint!r}?)"
        raise RegistryError(msg)

    def source(self, name):
        self.get(name)
        return self._sources[name]

    def names(self):
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())

    def __contains__(self, name):
        return name in self._items

    def __len__(self):
        return len(self._items)

    def __repr__(self):
        return f"Registry({self.kind!r}, {self.names()})"
