"""Errors meant for the user: the CLI prints their message as one line (no traceback unless --debug)."""


class DeclipError(Exception):
    """A problem with the user's input (config, file, name) that they can fix."""


class ConfigError(DeclipError, ValueError):
    """An invalid key, type or value in a YAML config."""


class DataError(DeclipError):
    """A bad image, mask or dataset layout."""


class CheckpointError(DeclipError):
    """A checkpoint that cannot be read or does not fit the configured model."""


class RegistryError(DeclipError, KeyError):
    """An unknown or duplicate name in a registry."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def one_line(exc):
    """The user-facing line of an error: its message; for one re-raised from a DataLoader worker
    (``Caught DataError in DataLoader worker process 0. Original Traceback ...``) the original
    message, without the worker's traceback."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        lines = [line for line in text.splitlines() if line.strip()]
        last, name = lines[-1].strip(), type(exc).__name__
        at = last.find(f"{name}: ")
        text = last[at + len(name) + 2:] if at >= 0 else last
    return " ".join(text.split())
