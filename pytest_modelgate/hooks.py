"""Hooks a team implements in its conftest.py or plugin to plug in a private model zoo."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from torch import nn


@pytest.hookspec(firstresult=True)
def pytest_modelgate_load_model(name: str, weights: Any) -> nn.Module | None:
    """Return the model called ``name`` (with ``weights``: "DEFAULT" or None), or None to pass.

    Called with the run's seed already set on Python's, numpy's and torch's generators.
    """


@pytest.hookspec(firstresult=True)
def pytest_modelgate_find_head(model: nn.Module) -> str | None:
    """Return the dotted path of ``model``'s classifier head, or None to use the usual rules."""
