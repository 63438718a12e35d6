"""Errors that `lth` raises for problems a user can fix.

Every error carries one line that names what is wrong and how to fix it; the CLI prints that
line to stderr and exits non-zero. Anything that is not an `LthError` is a bug in `lth`.
"""


class LthError(Exception):
    """Base class: a problem with the user's input, data or files, with a fix in the message."""


class ConfigError(LthError):
    """An unknown preset or key, or a value of the wrong type or out of range."""


class DataError(LthError):
    """A data set that is missing, truncated, corrupt or cannot be fetched."""


class StoreError(LthError):
    """A run directory that cannot be written, or whose files were damaged."""
