"""How messages word a count: ``counted(1, "metric")`` is "1 metric", ``counted(3,
"metric")`` "3 metrics", never "3 metric(s)"."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun in the number it takes.

    Example:
        >>> counted(1, "metric"), counted(3, "metric"), counted(2, "class", "classes")
        ('1 metric', '3 metrics', '2 classes')
    """
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
