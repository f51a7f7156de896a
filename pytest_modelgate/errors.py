"""Exceptions and warnings raised by pytest-modelgate."""

from __future__ import annotations


class ModelGateError(ValueError):
    """Bad input to a modelgate function: the message names the argument and the fix."""


class HeadNotFoundError(ModelGateError):
    """The classifier head of a model could not be resolved to exactly one module."""


class AdapterUnavailableError(ModelGateError, ImportError):
    """A framework the request needs (torch, torchvision, tensorflow ...) is not installed."""


class BaselineError(ModelGateError):
    """The baseline file is corrupt, foreign, or of an unknown schema."""


class ModelGateWarning(UserWarning):
    """Something a user should know that does not stop the run."""
