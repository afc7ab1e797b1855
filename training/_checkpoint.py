"""Versioned model checkpoints: one ``.npz`` file that the secure-inference side loads.

Format, version 1 (``FORMAT_VERSION``). An uncompressed NumPy ``.npz`` archive with:

- ``__meta__``: a uint8 array holding UTF-8 JSON with the keys
  ``format`` (``"secmoe-jax-checkpoint"``), ``format_version`` (int),
  ``config`` (``EncoderConfig.to_dict()``; ``moe`` nested or null),
  ``tokenizer`` (``{"asset": "all-MiniLM-L6-v2", "max_len": int}``: the tokenizer is the one
  of the named offline asset; a pruned vocabulary is in ``__vocab_map__``),
  ``weights_sha256`` (see below), ``param_names`` (sorted), ``dtype`` (``"float32"`` or
  ``"float16"``: storage dtype of the floating parameters; loading returns float32),
  ``label_names`` (list of str) and ``extra`` (free-form JSON: metrics, step, command).
- ``param/<path>``: one array per parameter; ``<path>`` is the NNX state path joined with
  ``/`` (e.g. ``param/layers/0/query/kernel``, kernels ``[in, out]``).
- ``__vocab_map__`` (optional): int32 ``[V']``, ``vocab_map[new_id] = original_id`` of a pruned
  vocabulary (the word-embedding rows are already pruned).

``weights_sha256`` is the SHA-256 over, for every parameter in sorted name order, the name,
dtype and shape (as ``name|dtype|shape\\n`` in UTF-8) followed by the raw little-endian bytes;
``__vocab_map__`` is hashed last the same way. A mismatch means a corrupted file.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zipfile
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._config import EncoderConfig
from ._model import Encoder

FORMAT = "secmoe-jax-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, or from an unsupported format version."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        name = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, name))
        else:
            out[name] = np.asarray(v)
    return out


def params_to_flat(model: Encoder) -> dict[str, np.ndarray]:
    """The model's parameters as ``{"layers/0/query/kernel": array, ...}``."""
    return _flatten(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def flat_to_model(cfg: EncoderConfig, flat: dict[str, np.ndarray]) -> Encoder:
    """An :class:`Encoder` of ``cfg`` holding the float32 parameters ``flat``."""
    model = Encoder(cfg, rngs=nnx.Rngs(0))
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    expected = _flatten(pure)
    if set(expected) != set(flat):
        missing, unexpected = sorted(set(expected) - set(flat)), sorted(set(flat) - set(expected))
        raise CheckpointError(
            f"checkpoint parameters do not match the config: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, arr in flat.items():
        if expected[name].shape != arr.shape:
            raise CheckpointError(
                f"checkpoint parameter {name} has shape {arr.shape}, the config "
                f"expects {expected[name].shape}"
            )
        node = pure
        keys = name.split("/")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() and int(k) in node else node[k]
        node[keys[-1]] = jnp.asarray(arr, jnp.float32)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


def _digest(arrays: dict[str, np.ndarray], vocab_map: np.ndarray | None) -> str:
    h = hashlib.sha256()
    items = sorted(arrays.items())
    if vocab_map is not None:
        items.append(("__vocab_map__", vocab_map))
    for name, a in items:
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_checkpoint(
    path: str | pathlib.Path,
    model: Encoder,
    *,
    tokenizer_max_len: int,
    label_names: tuple[str, ...] | list[str] = ("0", "1"),
    vocab_map: np.ndarray | None = None,
    dtype: str = "float32",
    extra: dict[str, Any] | None = None,
) -> pathlib.Path:
    """Writes ``model`` as a version-``FORMAT_VERSION`` checkpoint (module docstring).

    Args:
      path: the ``.npz`` file to write (parent folders are created; written atomically).
      model: the encoder.
      tokenizer_max_len: the sequence length the model was trained and evaluated with.
      label_names: the name of each class.
      vocab_map: pruned vocabulary (``vocab_map[new] = original id``), or None.
      dtype: "float32" or "float16" storage for floating parameters.
      extra: JSON-serialisable extra information (metrics, step, command).
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"save_checkpoint: dtype must be float32 or float16, got {dtype!r}")
    arrays = {
        k: v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in params_to_flat(model).items()
    }
    vm = None if vocab_map is None else np.asarray(vocab_map, np.int32)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.cfg.to_dict(),
        "tokenizer": {"asset": "all-MiniLM-L6-v2", "max_len": int(tokenizer_max_len)},
        "weights_sha256": _digest(arrays, vm),
        "param_names": sorted(arrays),
        "dtype": dtype,
        "label_names": [str(n) for n in label_names],
        "extra": extra or {},
    }
    payload = {f"param/{k}": v for k, v in arrays.items()}
    payload["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    if vm is not None:
        payload["__vocab_map__"] = vm
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **payload)
    tmp.replace(path)
    return path


class Checkpoint:
    """A loaded checkpoint: ``model``, ``config``, ``meta``, ``vocab_map`` and ``max_len``."""

    def __init__(self, model: Encoder, meta: dict[str, Any], vocab_map: np.ndarray | None):
        self.model = model
        self.config: EncoderConfig = model.cfg
        self.meta = meta
        self.vocab_map = vocab_map
        self.max_len: int = meta["tokenizer"]["max_len"]
        self.label_names: tuple[str, ...] = tuple(meta["label_names"])


def read_checkpoint(path: str | pathlib.Path) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """Reads and verifies a checkpoint without building a model: ``(meta, params, vocab_map)``.

    Raises:
      CheckpointError: missing file, not a checkpoint, unsupported version, or corrupted.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupted or not a secmoe-jax checkpoint "
            f"(cannot read the archive: {e})"
        ) from e
    if "__meta__" not in data:
        raise CheckpointError(f"{path} is not a secmoe-jax checkpoint (no __meta__ entry)")
    try:
        meta = json.loads(data.pop("__meta__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupted (unreadable metadata)") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a secmoe-jax checkpoint (format {meta.get('format')!r})"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}; this secmoe-jax "
            f"reads version {FORMAT_VERSION}. Re-export it with the matching "
            "secmoe-jax release (or retrain)"
        )
    vocab_map = data.pop("__vocab_map__", None)
    params = {k.removeprefix("param/"): v for k, v in data.items()}
    if sorted(params) != meta["param_names"]:
        raise CheckpointError(
            f"checkpoint {path} is corrupted (parameter list differs from the metadata)"
        )
    if _digest(params, vocab_map) != meta["weights_sha256"]:
        raise CheckpointError(f"checkpoint {path} is corrupted (weights SHA-256 mismatch)")
    return meta, params, vocab_map


def load_checkpoint(path: str | pathlib.Path) -> Checkpoint:
    """Loads a checkpoint written by :func:`save_checkpoint` (float32 parameters).

    Raises:
      CheckpointError: missing file, unsupported version, corruption, or a config mismatch.
    """
    meta, params, vocab_map = read_checkpoint(path)
    try:
        cfg = EncoderConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {e}") from e
    model = flat_to_model(cfg, {k: v.astype(np.float32) for k, v in params.items()})
    return Checkpoint(model, meta, vocab_map)
