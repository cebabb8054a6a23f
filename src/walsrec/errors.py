"""Exceptions raised by walsrec.

Every exception subclasses :class:`WalsrecError` and a built-in (``ValueError`` or
``TypeError``; ``RuntimeError`` for a directory another run holds), so existing
``except ValueError`` clauses keep working. The library never
prints or exits; the command line turns these into one line on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "DataFormatError",
    "InvalidParameterError",
    "LockedError",
    "NoWorkersError",
    "NotFittedError",
    "SingularSystemError",
    "UnknownIdError",
    "WalsrecError",
]


class WalsrecError(Exception):
    """Base class of every error walsrec raises on purpose."""


class InvalidParameterError(WalsrecError, ValueError):
    """A parameter or argument breaks its rule (the message names both and the value)."""


class DataFormatError(WalsrecError, ValueError):
    """Input data is malformed; the message names the file, the line or record and the value."""


class LockedError(WalsrecError, RuntimeError):
    """Another walsrec run holds the directory's lock (the message says who)."""


class NoWorkersError(WalsrecError, RuntimeError):
    """The Dask cluster has no worker to run on (the message names the scheduler)."""


class SingularSystemError(WalsrecError, ValueError):
    """A least-squares system could not be solved (usually: regularization is too small)."""


class NotFittedError(WalsrecError, ValueError):
    """A method that needs a fitted model was called before ``fit``."""


class UnknownIdError(WalsrecError, ValueError):
    """A user or item id is not in the model's vocabulary."""
