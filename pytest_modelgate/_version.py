"""The package's version, in a module of its own: ``cache.py`` and the report read it
without importing the package ``__init__`` (which re-exports modules that import them)."""

__version__ = "0.1.0"
