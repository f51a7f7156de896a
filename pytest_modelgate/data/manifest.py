"""``from_manifest``: splits from a CSV or Parquet table with one row per image (its path,
its label, its split, and any other columns as per-sample attributes), decoded and cached
as ``from_folder`` does."""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AdapterUnavailableError, ModelGateError, user_error_frames
from ..wording import counted
from .arraycache import ArrayCache, decode_cached
from .sources import split_by_fraction
from .splits import ImageSet, Splits

# ModelGateErrors show the user's line, not this package's frames (see errors.py).
__tracebackhide__ = user_error_frames

# The split column's values and the split each stands for (compared case-insensitively).
SPLIT_VALUES = {"train": "train", "test": "test", "val": "val", "validation": "val",
                "valid": "val"}
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class _Table:
    """A manifest's cells by column, and where each row sits in the file for messages."""

    file: str
    columns: list[str]
    cells: dict[str, list[Any]]
    places: list[str]   # "line 3" (CSV, the header is line 1) or "row 1" (Parquet)

    def where(self, rows: Sequence[int], column: str | None = None, *, limit: int = 5) -> str:
        """``manifest.csv line 3, line 7 (column 'label')``: the first rows of ``rows``."""
        shown = ", ".join(self.places[r] for r in rows[:limit])
        more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
        col = f" (column {column!r})" if column else ""
        return f"{self.file} {shown}{more}{col}"


def from_manifest(path: str | Path, *, root: str | Path | None = None, image: str = "path",
                  label: str = "label", split: str | None = "split",
                  size: tuple[int, int] | None = None, label_sep: str | None = None,
                  splits: Sequence[str] | Mapping[str, str] | None = None,
                  test_fraction: float | None = None, seed: int = 0,
                  cache: bool | str | Path | None = None) -> Splits:
    """Splits from a manifest: a CSV (``.csv``; ``.tsv`` tab-separated) or Parquet file
    with one row per image.

    Columns: ``image`` (the file's path, relative to ``root``, by default the manifest's
    folder; ``\\`` or ``/`` between folders), ``label`` (its class) and ``split``
    (``train``, ``test``, ``val``; also ``validation`` and ``valid``, any case).
    ``splits=`` names other split values: a mapping such as ``{"fit": "train", "holdout":
    "test"}``, or the values for train and test (and val) in that order,
    ``("fit", "holdout")``. Without a ``test`` value, ``val``
    rows are the test split (as in ``from_folder``); beside test they are ``Splits.val``.
    Without a split column pass ``test_fraction=`` (and ``seed=``) for a stratified split.

    Class names are the labels, sorted (as numbers when every label is an integer). With
    ``label_sep="|"`` a label cell names several classes (``cat|dog``) and the labels are
    an (N, classes) 0/1 matrix; an empty cell is then an image of none of them. In a
    Parquet file a list-valued label column is multilabel too.

    Every other column becomes a per-sample attribute of each split's ``ImageSet``
    (``run.attributes`` of a fine-tune): integers when every cell is one, numbers when
    every filled cell is one (an empty cell is NaN), else text. Images are decoded and
    cached as ``from_folder`` does (``size=``, ``cache=``); the cache holds pixels only,
    so an edited label or attribute is always read from the manifest.

    Raises:
        ModelGateError: naming the file, line and column: a missing column, an empty
            manifest, a blank path or (single-label) label, an image listed twice or in two
            splits, unknown split values, missing image files, mixed sizes without ``size=``.

    Example:
        >>> splits = from_manifest("labels.csv", size=(224, 224))  # doctest: +SKIP
    """
    path = Path(path)
    table = _read_table(path)
    base = Path(root) if root is not None else path.parent
    has_split = split is not None and split in table.columns
    for arg, column in (("image", image), ("label", label)):
        _require_column(table, arg, column)
    if test_fraction is not None and has_split:
        raise ModelGateError(
            f"{table.file} has a {split!r} column and test_fraction={test_fraction} was "
            "passed: drop test_fraction= to use the column's split, or pass split=None to "
            "split by fraction")
    if test_fraction is None:
        if split is None:
            raise ModelGateError("split=None needs test_fraction= (e.g. 0.2) to split the "
                                 "manifest's rows")
        _require_column(table, "split", split, fix=" or pass test_fraction= (e.g. 0.2) to "
                        "split the rows for you")
    assigned = _assign_splits(table, split, splits) if has_split else None
    files = _image_files(table, image, base, assigned)
    labels, names = _labels(table, label, label_sep)
    attributes = {c: _attribute(table, c) for c in table.columns
                  if c not in (image, label, split)}
    if assigned is None:
        every = list(range(len(files)))
        images, ids = _decode(table, every, files, size, cache)
        return split_by_fraction(images, labels, class_names=names,
                                 test_fraction=float(test_fraction or 0), seed=seed,
                                 sources=files, attributes=attributes, ids=ids)
    _classes_train_shows(table, label, labels, names, assigned)
    parts: dict[str, ImageSet] = {}
    for name, rows in assigned.items():
        images, ids = _decode(table, rows, files, size, cache)
        parts[name] = ImageSet(images, labels[rows], names, name=name,
                               sources=tuple(files[r] for r in rows), _ids=ids,
                               attributes={k: v[rows] for k, v in attributes.items()})
    _same_size(table, parts, assigned)
    return Splits(train=parts["train"], test=parts["test"], val=parts.get("val"))


def _read_table(path: Path) -> _Table:
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + PARQUET_SUFFIXES:
        raise ModelGateError(
            f"from_manifest({str(path)!r}): a manifest is a CSV ({', '.join(CSV_SUFFIXES)}) "
            f"or Parquet ({', '.join(PARQUET_SUFFIXES)}) file; rename it or convert it")
    if not path.is_file():
        raise ModelGateError(f"from_manifest: no manifest file at {path}")
    table = _read_parquet(path) if suffix in PARQUET_SUFFIXES else _read_csv(path)
    if not table.places:
        raise ModelGateError(f"{table.file} is empty: it has no rows under its header "
                             f"({', '.join(table.columns) or 'no header either'}); add one "
                             "row per image")
    return table


def _read_csv(path: Path) -> _Table:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as f:   # -sig: Excel's BOM
        records = list(csv.reader(f, delimiter="\t" if path.suffix.lower() == ".tsv"
                                  else ","))
    header = [c.strip() for c in records[0]] if records else []
    repeated = sorted({c for c in header if c and header.count(c) > 1})
    if repeated:
        raise ModelGateError(f"{path.name} line 1 names the column(s) {repeated} twice; "
                             "give every column its own name")
    # A column without a name (pandas' unnamed index, a stray cell) is no attribute.
    named = [(k, c) for k, c in enumerate(header) if c]
    cells: dict[str, list[Any]] = {c: [] for _, c in named}
    places = []
    for number, record in enumerate(records[1:], start=2):
        if not any(c.strip() for c in record):
            continue  # a blank line (spreadsheets leave some at the end)
        if len(record) > len(header):
            raise ModelGateError(
                f"{path.name} line {number} has {len(record)} cells but the header (line 1) "
                f"names {len(header)} columns; quote cells that hold a comma, or add the "
                "column's name to the header")
        record = record + [""] * (len(header) - len(record))
        for k, column in named:
            cells[column].append(record[k].strip())
        places.append(f"line {number}")
    return _Table(path.name, [c for _, c in named], cells, places)


def _read_parquet(path: Path) -> _Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise AdapterUnavailableError(
            f"reading the Parquet manifest {path.name} needs pyarrow: "
            "pip install pytest-modelgate[parquet] (or pip install pyarrow)") from None
    cells = pq.read_table(path).to_pydict()
    n = len(next(iter(cells.values()), []))
    return _Table(path.name, list(cells), cells, [f"row {i}" for i in range(1, n + 1)])


def _require_column(table: _Table, arg: str, column: str, fix: str = "") -> None:
    if column not in table.columns:
        raise ModelGateError(
            f"{table.file} has no column {column!r} (its columns: "
            f"{', '.join(map(repr, table.columns))}); pass {arg}='<column>' naming the "
            f"column that holds each image's {arg}{fix}")


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and math.isnan(value))


def _mapping_hint(rows: dict[str, list[int]], unknown: list[str],
                  meaning: dict[str, str]) -> str:
    """A ``splits=`` mapping naming every value the column holds: the known ones as read,
    the unknown ones guessed from their names (``training`` -> train)."""
    guesses = (("train", "train"), ("fit", "train"), ("test", "test"), ("hold", "test"),
               ("eval", "test"), ("val", "val"), ("dev", "val"))
    known = {v: s for v, s in meaning.items() if s in rows}
    shown = {v: s for v, s in known.items() if v in SPLIT_VALUES or v in meaning}
    for value in unknown:
        low = value.casefold()
        shown[value] = next((s for start, s in guesses if low.startswith(start)),
                            "train|test|val")
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in shown.items()) + "}"


def _assign_splits(table: _Table, column: str, splits: Any) -> dict[str, list[int]]:
    """Row indices per split (train, test, and val if any), by the split column."""
    if splits is None:
        meaning = dict(SPLIT_VALUES)
    elif isinstance(splits, Mapping):
        meaning = {str(k).strip().casefold(): v for k, v in splits.items()}
        odd = sorted({v for v in meaning.values() if v not in ("train", "test", "val")})
        if odd:
            raise ModelGateError(f"splits= maps values to {odd}: each value must stand for "
                                 "'train', 'test' or 'val'")
    elif isinstance(splits, Sequence) and not isinstance(splits, str) and \
            len(splits) in (2, 3):
        meaning = {str(v).strip().casefold(): s
                   for v, s in zip(splits, ("train", "test", "val")[:len(splits)], strict=True)}
    else:
        raise ModelGateError(f"splits={splits!r}: pass the split column's values for train "
                             "and test (and val), e.g. ('fit', 'holdout'), or a mapping such "
                             "as {'fit': 'train', 'holdout': 'test'}")
    rows: dict[str, list[int]] = {}
    unknown: dict[str, list[int]] = {}
    for i, value in enumerate(table.cells[column]):
        key = "" if _blank(value) else str(value).strip()
        target = meaning.get(key.casefold())
        (rows.setdefault(target, []) if target else unknown.setdefault(key, [])).append(i)
    if unknown:
        bad = sorted(unknown, key=lambda k: unknown[k][0])
        at = "; ".join(f"{v or '(blank)'!r} at {table.where(unknown[v], limit=3)}"
                       for v in bad[:5])
        raise ModelGateError(
            f"{table.file} column {column!r} holds split values {bad[:5]} that are not "
            f"splits ({at}); accepted: {', '.join(sorted(meaning))} (any case); name every "
            f"value of the column (a mapping replaces the defaults): "
            f"splits={_mapping_hint(rows, bad, meaning)}")
    if "test" not in rows and "val" in rows:
        rows["test"] = rows.pop("val")   # train and val only: val is what is measured
    for needed in ("train", "test"):
        if needed not in rows:
            raise ModelGateError(
                f"{table.file} has no {needed} rows (column {column!r} holds "
                f"{sorted({str(v) for v in table.cells[column]})}); mark some rows "
                f"{needed!r}, or drop the column and pass test_fraction= to split the rows")
    return rows


def _image_files(table: _Table, column: str, base: Path,
                 assigned: dict[str, list[int]] | None) -> list[str]:
    """Each row's image path under ``base``; every file listed once and present."""
    cells = table.cells[column]
    blank = [i for i, v in enumerate(cells) if _blank(v)]
    if blank:
        raise ModelGateError(f"{table.where(blank, column)}: no image path; fill the cell or "
                             "delete the row")
    # A manifest written on Windows says img\\0001.png: the same file here.
    prefix = os.path.join(base, "")   # joined as strings: os.path.join per row cost more
    files = [f if os.path.isabs(f) else prefix + f
             for f in (str(v).strip().replace("\\", "/").replace("/", os.sep) for v in cells)]
    seen: dict[str, int] = {}
    split_of = {r: s for s, rows in (assigned or {}).items() for r in rows}
    for i, f in enumerate(files):
        first = seen.setdefault(os.path.normpath(f), i)
        if first != i:
            both = f"{table.places[first]} and {table.places[i]}"
            if split_of.get(first) != split_of.get(i):
                raise ModelGateError(
                    f"{table.file} lists {cells[i]} in {split_of[first]} ({table.places[first]})"
                    f" and in {split_of[i]} ({table.places[i]}) (column {column!r}): an image in "
                    "two splits leaks the test set into training; keep one of the rows")
            raise ModelGateError(f"{table.file} lists {cells[i]} twice, {both} (column "
                                 f"{column!r}); delete one of the rows")
    missing = _absent(files)
    if missing:
        shown = "; ".join(f"{table.places[i]}: {files[i]}" for i in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ModelGateError(
            f"{table.file} names {counted(len(missing), 'image file')} that "
            f"{'does' if len(missing) == 1 else 'do'} not exist "
            f"(column {column!r}): {shown}{more}; paths are relative to {base} (root=): fix "
            "the paths, or pass root= naming the folder they are relative to")
    return files


def _folder_and_name(path: str) -> tuple[str, str]:
    folder, _, name = path.rpartition(os.sep)
    return (folder + os.sep if folder or path.startswith(os.sep) else "." + os.sep), name


def _absent(files: list[str]) -> list[int]:
    """The rows whose file does not exist: one listing per folder, not a stat per file."""
    listings: dict[str, set[str]] = {}
    absent = []
    for i, path in enumerate(files):
        folder, name = _folder_and_name(path)
        if folder not in listings:
            try:
                listings[folder] = set(os.listdir(folder))
            except OSError:
                listings[folder] = set()
        if name not in listings[folder]:
            absent.append(i)
    return absent


def _class_order(values: set[str]) -> list[str]:
    if values and all(_INTEGER.fullmatch(v) for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _labels(table: _Table, column: str, sep: str | None) -> tuple[np.ndarray, list[str]]:
    """Class indices per row, or with ``sep`` (or list cells) a 0/1 matrix; class names."""
    cells = table.cells[column]
    listed = [isinstance(v, (list, tuple)) for v in cells]
    if sep is not None or any(listed):
        if any(listed) and not all(listed) and sep is None:
            odd = [i for i, is_list in enumerate(listed) if not is_list]
            raise ModelGateError(f"{table.where(odd, column)}: a single label where other "
                                 "rows hold lists; make every cell a list of labels")
        sets = [[] if _blank(v) else
                [str(x).strip() for x in (v if isinstance(v, (list, tuple))
                                          else str(v).split(sep)) if str(x).strip()]
                for v in cells]
        names = _class_order({c for s in sets for c in s})
        if not names:
            raise ModelGateError(f"{table.file} column {column!r} names no class in any row")
        index = {c: k for k, c in enumerate(names)}
        matrix = np.zeros((len(cells), len(names)), dtype=np.int64)
        for i, s in enumerate(sets):
            matrix[i, [index[c] for c in s]] = 1
        return matrix, names
    blank = [i for i, v in enumerate(cells) if _blank(v)]
    if blank:
        raise ModelGateError(
            f"{table.where(blank, column)}: no label; every image needs its class (for a "
            "multilabel manifest pass label_sep='|': an empty cell is then an image of no "
            "class)")
    text = [str(v).strip() for v in cells]
    names = _class_order(set(text))
    index = {c: k for k, c in enumerate(names)}
    return np.array([index[t] for t in text], dtype=np.int64), names


def _classes_train_shows(table: _Table, column: str, labels: np.ndarray, names: list[str],
                         assigned: dict[str, list[int]]) -> None:
    """A test or val row of a class no train row has, named by its line."""
    def shown(rows: list[int]) -> np.ndarray:
        part = labels[rows]
        return part.any(axis=0) if part.ndim == 2 else np.isin(np.arange(len(names)), part)

    trained = shown(assigned["train"])
    for split, rows in assigned.items():
        unseen = np.flatnonzero(shown(rows) & ~trained)
        if split != "train" and len(unseen):
            odd = [r for r in rows if (labels[r][unseen].any() if labels.ndim == 2
                                       else labels[r] in unseen)]
            raise ModelGateError(
                f"{table.where(odd, column)}: {split} rows of "
                f"{[names[k] for k in unseen][:5]}, a class no train row has; add train "
                f"rows of it, or drop those rows")


def _attribute(table: _Table, column: str) -> np.ndarray:
    """A column as integers, numbers (empty cells NaN) or text, whichever fits all cells."""
    cells = table.cells[column]
    if all(isinstance(v, bool) for v in cells):
        return np.array(cells, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in cells):
        return np.array(cells, dtype=np.int64)
    if all(isinstance(v, (int, float)) or v is None for v in cells) and \
            not all(v is None for v in cells):
        return np.array([math.nan if v is None else v for v in cells], dtype=np.float64)
    if all(isinstance(v, str) or v is None for v in cells):
        text = ["" if v is None else v for v in cells]
        filled = [t for t in text if t]
        if filled and len(filled) == len(text) and all(_INTEGER.fullmatch(t) for t in text):
            return np.array([int(t) for t in text], dtype=np.int64)
        try:
            if filled:
                return np.array([float(t) if t else math.nan for t in text])
        except ValueError:
            pass
        return np.array(text, dtype=str)
    kinds = sorted({type(v).__name__ for v in cells if v is not None})
    raise ModelGateError(f"{table.file} column {column!r} holds {kinds}: an attribute is "
                         "one number or text per image; drop the column or flatten it")


def _decode(table: _Table, rows: list[int], files: list[str], size: tuple[int, int] | None,
            cache: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """The rows' images and content ids, through the array cache (keyed by the paths and
    ``size=``; it holds pixels only)."""
    paths = [files[r] for r in rows]
    split = [_folder_and_name(p) for p in paths]
    listed = [(folder, [name for _, name in group])
              for folder, group in itertools.groupby(split, key=lambda pair: pair[0])]
    cached = ArrayCache.open(cache, paths, size)
    images, ids = decode_cached(paths, size, cached, listed)
    if isinstance(images, list):
        first = images[0].shape
        odd = next(i for i, img in enumerate(images) if img.shape != first)
        raise ModelGateError(
            f"images of mixed sizes in {table.file}: {table.places[rows[0]]} {paths[0]} is "
            f"{first}, {table.places[rows[odd]]} {paths[odd]} is {images[odd].shape}; pass "
            "size=(H, W) to from_manifest to resize them")
    return images, ids


def _same_size(table: _Table, parts: dict[str, ImageSet], rows: dict[str, list[int]]) -> None:
    shapes = {name: part.images.shape[1:] for name, part in parts.items()}
    if len(set(shapes.values())) > 1:
        told = ", ".join(f"{name} ({table.places[rows[name][0]]} {parts[name].sources[0]}) "
                         f"{shape}" for name, shape in shapes.items() if parts[name].sources)
        raise ModelGateError(f"images of mixed sizes in {table.file}: {told}; pass "
                             "size=(H, W) to from_manifest to resize them")
