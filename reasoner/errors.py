"""The one user-error class. The CLI prints a `UserError`'s message on one line and exits 2;
every other exception is a bug and keeps its traceback (exit 1)."""

from __future__ import annotations


class UserError(Exception):
    """Bad input the user can fix: an unknown name, a missing file, a run that cannot be used
    as asked. The message names what and where, and says what to do instead."""


class UnknownName(UserError, KeyError):
    """A name no registry knows (a KeyError too, so ``except KeyError`` callers still work)."""

    def __str__(self) -> str:  # KeyError's own str() wraps the message in quotes
        return str(self.args[0]) if self.args else ""


class MissingFile(UserError, FileNotFoundError):
    """An input file the user named does not exist."""
