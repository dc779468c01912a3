"""A reader's labelled text table, read and checked: what `decoupling gain` codes (experiments.gain).

`read(data, text_col, label_col)` takes a `datasets.Dataset` / `DatasetDict` (its "train" split), a saved
`datasets` directory, or a CSV / TSV / JSONL / JSON / Parquet file, and returns (texts, labels as an int
array, class names). Whatever cannot be coded is a `TableError` whose one line says what to change.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class TableError(ValueError):
    """A table that cannot be coded; the message is one line (any run of whitespace becomes one space)."""

    def __init__(self, message: str = ""):
        super().__init__(" ".join(str(message).split()))


def _why(e: Exception) -> str:
    """A reader's exception, shortened to its first 300 characters."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}{'…' if len(text) > 300 else ''}"


def _shown(v) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:39] + "…"


def _empty_splits(p: Path) -> list[str]:
    """The splits of a saved `datasets` directory that list no data files: `datasets` saves a split without
    rows that way and cannot load it back (an IndexError), which deserves its own message."""
    import json
    empty = []
    for state in sorted([*p.glob("state.json"), *p.glob("*/state.json")]):
        try:
            if json.loads(state.read_text()).get("_data_files") == []:
                empty.append(state.parent.name if state.parent != p else p.name)
        except (OSError, ValueError, AttributeError):
            pass
    return empty


def _load(p: Path, text_col: str):
    """The table at path `p`: a saved `datasets` directory or a file in one of the known formats."""
    import pandas as pd
    if not p.exists():
        raise TableError(f"no such file or directory: {p}")
    if p.is_dir():
        try:
            import datasets
            return datasets.load_from_disk(str(p))
        except Exception as e:
            if empty := _empty_splits(p):
                raise TableError(f"{p}: no rows (the saved split{'s' if len(empty) > 1 else ''} "
                                 f"{', '.join(empty)} {'have' if len(empty) > 1 else 'has'} no data files)") from None
            raise TableError(f"{p} is not a saved `datasets` directory ({_why(e)})") from None
    readers = {".csv": lambda f: pd.read_csv(f, dtype={text_col: str}),
               ".tsv": lambda f: pd.read_csv(f, sep="\t", dtype={text_col: str}),
               ".jsonl": lambda f: pd.read_json(f, lines=True, dtype=False),
               ".json": lambda f: pd.read_json(f, dtype=False),
               ".parquet": pd.read_parquet}
    if p.suffix.lower() not in readers:
        raise TableError(f"{p.name}: unknown format; use one of {', '.join(readers)} or a `datasets` directory")
    try:
        return readers[p.suffix.lower()](p)
    except Exception as e:
        raise TableError(f"cannot read {p}: {_why(e)}") from None


def _frame(data, where: str):
    """A pandas frame of `data` (a `datasets` object, or a frame already)."""
    import pandas as pd
    if hasattr(data, "keys") and hasattr(data, "column_names") and isinstance(data.column_names, dict):
        if "train" not in data:  # a DatasetDict
            raise TableError(f"{where}: the dataset has splits {list(data)}; give one `Dataset` or a dict with 'train'")
        data = data["train"]
    if hasattr(data, "to_pandas"):
        data = data.to_pandas()
    if not isinstance(data, pd.DataFrame):
        raise TableError(f"{where}: unsupported dataset type {type(data).__name__}")
    return data


def _class_name(v) -> str | None:
    """A label's class name, or None for a value that is not a class."""
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_, int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return None


def read(data, text_col: str = "text", label_col: str = "label"):
    """(texts, labels as int array, class names) from a `datasets.Dataset` / `DatasetDict` (its "train"
    split), a saved `datasets` directory, or a CSV / TSV / JSONL / JSON / Parquet file.

    Rows without a text or without a label (missing, NaN, or a label of blanks only) are left out. Anything
    else that cannot be coded is a TableError whose one line names the file (or "the table" for one in
    memory) and the column: no rows, no such column, a text that is not a string, a label that is neither
    a string nor a whole number, fewer than two classes. A CSV / TSV text column is read as strings (in
    those formats a number is text); JSON, Parquet and `datasets` keep their types, so a number there is
    refused as a text."""
    where = "the table"
    if isinstance(data, (str, Path)):
        where = str(Path(data))
        data = _load(Path(data), text_col)
    data = _frame(data, where)
    if len(data) == 0:
        raise TableError(f"{where}: no rows")
    if text_col == label_col:
        raise TableError(f"{where}: the text and the label column are both {text_col!r} (--text-col / --label-col)")
    for col in (text_col, label_col):
        if col not in data.columns:
            names = [str(c) for c in data.columns]
            listed = ", ".join(map(_shown, names[:12])) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
            raise TableError(f"{where}: no column {col!r}; " +
                             (f"the columns are {listed}" if names else "it has no columns") +
                             " (--text-col / --label-col choose others)")
    df = data[[text_col, label_col]]
    blank = df[label_col].map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(bool)
    df = df[df[text_col].notna().to_numpy(bool) & df[label_col].notna().to_numpy(bool) & ~blank]
    if len(df) == 0:
        raise TableError(f"{where}: none of its {len(data)} rows has both a text in {text_col!r} and a label "
                         f"in {label_col!r}")
    for i, t in zip(df.index, df[text_col]):
        if not isinstance(t, str):
            raise TableError(f"{where}: texts in {text_col!r} must be strings; row {i} holds {_shown(t)} "
                             f"({type(t).__name__})")
    names = [_class_name(v) for v in df[label_col]]
    for i, v, c in zip(df.index, df[label_col], names):
        if c is None:
            raise TableError(f"labels in {label_col!r} must be integers or strings ({where}: row {i} holds "
                             f"{_shown(v)}, {type(v).__name__})")
    classes = sorted(set(names))
    if len(classes) < 2:
        raise TableError(f"{where}: one class only in {label_col!r} ({classes[0]!r}): there is nothing to predict")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in names], np.int64)
    return [str(t) for t in df[text_col]], y, classes
