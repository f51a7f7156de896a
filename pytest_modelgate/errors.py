"""Exceptions and warnings raised by pytest-modelgate."""

from __future__ import annotations

from typing import Any


class ModelGateError(ValueError):
    """Bad input to a modelgate function: the message names the argument and the fix."""


class HeadNotFoundError(ModelGateError):
    """The classifier head of a model could not be resolved to exactly one module."""


class AdapterUnavailableError(ModelGateError, ImportError):
    """A framework the request needs (torch, torchvision, tensorflow ...) is not installed."""


class BaselineError(ModelGateError):
    """The baseline file is corrupt, foreign, or of an unknown schema.

    ``replaceable``: the file is a damaged or other-version baseline, which
    ``--modelgate-update-baseline`` may replace; a foreign file (not a baseline at all)
    is never overwritten.
    """

    def __init__(self, message: str, *, replaceable: bool = True) -> None:
        super().__init__(message)
        self.replaceable = replaceable


class ModelGateWarning(UserWarning):
    """Something a user should know that does not stop the run."""


def user_error_frames(excinfo: Any) -> bool:
    """The ``__tracebackhide__`` of this package's modules.

    pytest hides a frame whose module defines ``__tracebackhide__`` as a callable that
    returns True for the error. A ``ModelGateError`` is about the user's input, so the
    user sees their own line and the message, not this package's frames and their array
    arguments; any other error (a bug here) keeps every frame. ``--full-trace`` shows all.
    """
    return excinfo is not None and excinfo.errisinstance(ModelGateError)


def warn_user(message: str) -> None:
    """Warn with a ``ModelGateWarning`` that points at the first line outside this package
    (the user's call), however deep inside it the warning is raised."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and \
            frame.f_globals.get("__name__", "").partition(".")[0] == "pytest_modelgate":
        frame, level = frame.f_back, level + 1
    warnings.warn(message, ModelGateWarning, stacklevel=level)
