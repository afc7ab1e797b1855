"""Secure Flax-to-shares encoder: a training checkpoint evaluated under two-party computation.

The server owns a checkpoint (a :mod:`secmoe_jax.training` ``.npz``); :func:`setup` secret-shares
every parameter (the client's shares are uniformly random) and masks every weight matrix ONCE
(fixed-operand triples: ``F = W - B`` opened at setup, ``B`` derived from the dealer's weights
key), so per-query traffic does not grow with the weights. :func:`forward` is the per-party
protocol of one query batch ``[B, T]``; :class:`SecureModel` jits it once per (model, sequence
length, batch size) and reveals the logits to the client only.

What is public: the architecture and approximation choices, shapes (batch, padded length,
experts, capacity) and the padding mask (how many real tokens each sequence has: the client
reveals the length of its input, as every peer system does). What is secret: token ids (the
embedding lookup is a product of the client's secret one-hot tokens with the secret table),
every weight, every activation, the routing of every token, the logits (client only).

Layer by layer (post-LN BERT/MiniLM, as :class:`secmoe_jax.training.Encoder`):
  embeddings  onehot(ids) @ W_word (+ position, type rows) -> LayerNorm
  attention   Q, K, V = x W + b (1/sqrt(d_head) folded into W_q, b_q at setup);
              scores = Q K^T (Beaver einsum); softmax ("2quad"/"exact", padding mask);
              ctx = P V; x <- LayerNorm(x + ctx W_o + b_o)
  FFN         dense: GeLU(x W_1 + b_1) W_2 + b_2; MoE: :func:`protocols.moe_layer`
              x <- LayerNorm(x + FFN(x))
  head        mean pooling over real tokens (public counts) -> logits = pooled W_c + b_c
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import comm
from .. import protocols as pr
from ..dealer import Dealer, Material
from ..kernels import DEFAULT_FRAC_BITS, Ring
from ..runtime import Cost, Program, share

EMBEDDINGS = ("private", "public")


def bucket_length(longest: int, max_len: int) -> int:
    """Padded sequence length for ``longest`` real tokens: the next multiple of 16, capped at
    ``max_len`` (one compiled program per bucket)."""
    return int(min(max_len, max(16, 16 * -(-longest // 16))))


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - np.max(v))
    return e / e.sum()


@dataclasses.dataclass(frozen=True)
class SecureOptions:
    """Run-time choices of the secure forward (static: changing one retraces).

    Attributes:
      moe_strategy: MoE evaluation: "all", "stc" or "dispatch".
      gelu_strategy: piecewise GeLU evaluation: "stc" or "cts".
      embedding: "private" (secret one-hot tokens times the secret table) or "public" (the
        client looks its tokens up in a public table and shares the embeddings: no lookup
        traffic, but the word-embedding table is revealed to the client).
      frac_bits: fixed-point fractional bits.
    """

    moe_strategy: str = "dispatch"
    gelu_strategy: str = "stc"
    embedding: str = "private"
    frac_bits: int = DEFAULT_FRAC_BITS

    def __post_init__(self) -> None:
        if self.moe_strategy not in ("all", "stc", "dispatch"):
            raise ValueError(
                f"moe_strategy must be all, stc or dispatch, got {self.moe_strategy!r}"
            )
        if self.gelu_strategy not in ("stc", "cts"):
            raise ValueError(f"gelu_strategy must be stc or cts, got {self.gelu_strategy!r}")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {self.embedding!r}")

    def gelu_variant(self, trained: str) -> str:
        """The protocol GeLU for a checkpoint's GeLU: "exact" runs the accurate Fourier form."""
        return "secformer" if trained == "exact" else trained


def _dense_names(cfg: Any, embedding: str) -> list[str]:
    """Top-level weight matrices masked once at setup (the layers' are in :func:`_layer_dense`)."""
    names = ["embeddings/word_embeddings/embedding"] if embedding == "private" else []
    if cfg.num_labels > 0:
        names.append("classifier/kernel")
    return names


LAYER_MASK_IDS = 5000  # offset of the layers' mask ids inside a deployment's id block


def _layer_dense(cfg: Any) -> list[str]:
    """One layer's weight matrices (names relative to the layer)."""
    names = ["qkv/kernel", "attention_output/kernel"]
    if cfg.moe is None:
        names += ["intermediate/kernel", "output/kernel"]
    return names


def prepare_params(cfg: Any, flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Float parameters in the secure layout (done once by the server, in the clear).

    * Q, K, V are concatenated into one ``qkv`` kernel ``[D, 3D]`` (one product per layer), with
      ``1/sqrt(d_head)`` folded into the query columns and bias.
    * The token-type row 0 is added to every position row (the client sends type 0 only).
    * Every layer parameter ``layers/<i>/<name>`` becomes ``layers/<name>`` stacked ``[L, ...]``
      (the layers run as one scanned block, :func:`protocols.scan`).
    """
    out = {k: np.asarray(v, np.float64) for k, v in flat.items()}
    scale = 1.0 / np.sqrt(cfg.hidden // cfg.heads)
    for i in range(cfg.layers):
        p = f"layers/{i}"
        q_k, q_b = out.pop(f"{p}/query/kernel") * scale, out.pop(f"{p}/query/bias") * scale
        k_k, k_b = out.pop(f"{p}/key/kernel"), out.pop(f"{p}/key/bias")
        v_k, v_b = out.pop(f"{p}/value/kernel"), out.pop(f"{p}/value/bias")
        out[f"{p}/qkv/kernel"] = np.concatenate([q_k, k_k, v_k], axis=1)
        out[f"{p}/qkv/bias"] = np.concatenate([q_b, k_b, v_b])
    pos = out.pop("embeddings/position_embeddings/embedding")
    types = out.pop("embeddings/token_type_embeddings/embedding")
    out["embeddings/position_type"] = pos + types[0]
    # the layers' parameters stacked along a leading layer axis: "layers/<name>" [L, ...]
    per_layer = [
        {k[len(f"layers/{i}/") :]: out.pop(k) for k in list(out) if k.startswith(f"layers/{i}/")}
        for i in range(cfg.layers)
    ]
    for name in per_layer[0]:
        out[f"layers/{name}"] = np.stack([lp[name] for lp in per_layer])
    return out


def setup_fn(
    params: dict[str, Ring], mat: Material, *, cfg: Any, base_id: int, embedding: str
) -> dict:
    """Per-party setup: mask every weight matrix once.

    The top-level matrices (embedding table, classifier) are masked in one opening; the layers'
    in one scanned block (:func:`protocols.scan`, one opening per layer), so that layer ``l``'s
    masks come from the dealer's weights key of iteration ``l`` and match the forward block.

    Returns:
      This party's weights: top-level entries by name, and ``"layers"``: a dict of the layers'
      entries stacked along the layer axis (masked matrices, biases, norms, MoE weights).
    """
    dense = _dense_names(cfg, embedding)
    masked = pr.mask_weights({n: params[n] for n in dense}, mat, base_id=base_id)
    out: dict[str, Any] = dict(masked)
    for name, value in params.items():
        if name not in masked and not name.startswith("layers/"):
            out[name] = value
    stacked = {k[len("layers/") :]: v for k, v in params.items() if k.startswith("layers/")}
    layer_dense = _layer_dense(cfg)

    def layer_setup(carry, lp, m):
        ids = base_id + LAYER_MASK_IDS  # distinct from the top-level ids of this deployment
        w: dict[str, Any] = dict(pr.mask_weights({n: lp[n] for n in layer_dense}, m, base_id=ids))
        for name, value in lp.items():
            if name not in w and not name.startswith("moe/"):
                w[name] = value
        if cfg.moe is not None:
            moe = {k[len("moe/") :]: v for k, v in lp.items() if k.startswith("moe/")}
            w["moe"] = pr.setup_moe(moe, m, mask_ids=ids + len(layer_dense))
        return carry, w

    _, out["layers"] = pr.scan(layer_setup, None, stacked, mat, length=cfg.layers)
    return out


def _linear(x: Ring, weights: dict, name: str, mat: Material, frac_bits: int) -> Ring:
    y = pr.matmul_weight(x, weights[f"{name}/kernel"], mat, frac_bits=frac_bits)
    return y + weights[f"{name}/bias"]


def encoder_layer(
    x: Ring,
    keep: jax.Array,
    weights: dict,
    mat: Material,
    *,
    cfg: Any,
    opts: SecureOptions,
) -> Ring:
    """Per-party shares of one post-LN encoder layer ``[B, T, D] -> [B, T, D]``.

    Args:
      x: ``uint64[B, T, D]`` shares at ``opts.frac_bits``.
      keep: PUBLIC ``bool[B, T]`` padding mask (True = real token).
      weights: this party's weights of THIS layer (one slice of ``setup_fn(...)["layers"]``).
      cfg: the model's ``EncoderConfig``; opts: :class:`SecureOptions`.

    Steps (module docstring): fused QKV product with masked weights, ``Q K^T`` (Beaver
    einsum), softmax with the padding mask, ``P V``, output projection, residual + LayerNorm,
    dense GeLU FFN or :func:`protocols.moe_layer` per sequence, residual + LayerNorm.
    """
    f = opts.frac_bits
    b, t = keep.shape
    ln = dict(eps=cfg.layer_norm_eps, frac_bits=f)
    h, dh = cfg.heads, cfg.hidden // cfg.heads
    gelu = opts.gelu_variant(cfg.gelu)
    qkv = _linear(x, weights, "qkv", mat, f).reshape(b, t, 3, h, dh)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    scores = pr.einsum("bthd,bshd->bhts", q, k, mat, frac_bits=f)
    probs = pr.softmax(
        scores,
        mat,
        variant=cfg.softmax,
        axis=-1,
        mask=keep[:, None, None, :],
        c=cfg.softmax_c,
        frac_bits=f,
    )
    ctx = pr.einsum("bhts,bshd->bthd", probs, v, mat, frac_bits=f).reshape(b, t, h * dh)
    attn = _linear(ctx, weights, "attention_output", mat, f)
    x = pr.layernorm(
        x + attn,
        weights["attention_norm/scale"],
        weights["attention_norm/bias"],
        mat,
        **ln,
    )
    if cfg.moe is None:
        hid = _linear(x, weights, "intermediate", mat, f)
        act = pr.gelu(hid, mat, variant=gelu, strategy=opts.gelu_strategy, frac_bits=f)
        ff = _linear(act, weights, "output", mat, f)
    else:
        mcfg = pr.MoELayerConfig.from_encoder(
            cfg,
            strategy=opts.moe_strategy,
            gelu=gelu,
            silu="six" if cfg.silu == "exact" else cfg.silu,  # the protocol's SiLU
            act_strategy=opts.gelu_strategy,
            frac_bits=f,
        )
        ff = jnp.stack(
            [pr.moe_layer(x[j], weights["moe"], mat, cfg=mcfg, mask=keep[j]) for j in range(b)]
        )
    x = pr.layernorm(x + ff, weights["output_norm/scale"], weights["output_norm/bias"], mat, **ln)
    return x


def forward(
    tokens: Ring, mask: jax.Array, weights: dict, mat: Material, *, cfg: Any, opts: SecureOptions
) -> Ring:
    """Per-party secure forward of a batch; returns logits revealed to the client.

    Args:
      tokens: ``[B, T, V]`` shares of the client's one-hot tokens (integers, 0 fractional bits)
        for ``embedding="private"``, or ``[B, T, D]`` shares of its embeddings for ``"public"``.
      mask: ``[B, T]`` public 0/1 padding mask (the same on both parties).
      weights: this party's setup output (:func:`setup_fn`).
      cfg: the checkpoint's ``EncoderConfig``; opts: :class:`SecureOptions`.

    Returns:
      ``[B, labels]``: the logits on the client (party 1), zeros on the server.
    """
    f = opts.frac_bits
    b, t = mask.shape
    if opts.embedding == "private":
        x = pr.einsum_weight(
            "btv,vd->btd",
            tokens,
            weights["embeddings/word_embeddings/embedding"],
            mat,
            frac_bits=f,
            trunc="none",
        )
    else:
        x = tokens
    x = x + weights["embeddings/position_type"][:t][None]
    ln = dict(eps=cfg.layer_norm_eps, frac_bits=f)
    x = pr.layernorm(
        x, weights["embeddings/layer_norm/scale"], weights["embeddings/layer_norm/bias"], mat, **ln
    )
    keep = mask.astype(bool)

    def layer(x, lw, m):
        return encoder_layer(x, keep, lw, m, cfg=cfg, opts=opts), None

    x, _ = pr.scan(layer, x, weights["layers"], mat, length=cfg.layers)
    # mean pooling over the real tokens: the counts are public
    counts = jnp.maximum(jnp.sum(mask, axis=1), 1).astype(jnp.float64)
    summed = jnp.sum(x * mask[:, :, None].astype(jnp.uint64), axis=1)
    pooled = pr.mul_public(summed, (1.0 / counts)[:, None], mat, frac_bits=f)
    logits = _linear(pooled, weights, "classifier", mat, f)
    return comm.reveal_to(logits, comm.CLIENT, label="logits")


class SecureModel:
    """A checkpoint deployed for private inference: shares, masked weights, one jitted program.

    Args:
      cfg: the model's ``EncoderConfig``.
      params: float parameters by name (the checkpoint layout).
      opts: :class:`SecureOptions`.
      dealer: the deployment's :class:`~secmoe_jax.dealer.Dealer` (weights key + fresh query
        keys); default: a new one from OS randomness.
      mode: ``"simulate"`` or ``"devices"``.

    The setup (sharing and masking every weight) happens here, once; each call of
    :meth:`logits` then runs one query batch with fresh dealer material. One compiled program per
    (batch size, sequence length): a second query of the same shape does not retrace.
    """

    def __init__(
        self,
        cfg: Any,
        params: dict[str, np.ndarray],
        *,
        opts: SecureOptions = SecureOptions(),
        dealer: Dealer | None = None,
        mode: str = "simulate",
        label_names: tuple[str, ...] = (),
    ) -> None:
        import secrets
        from functools import partial

        self.cfg, self.opts, self.label_names = cfg, opts, tuple(label_names)
        self.dealer = dealer if dealer is not None else Dealer(secrets.randbits(62))
        prepared = prepare_params(cfg, params)
        self.public_table = None
        if opts.embedding == "public":
            self.public_table = prepared.pop("embeddings/word_embeddings/embedding")
        keys = jax.random.split(jax.random.key(secrets.randbits(62)), len(prepared))
        shares = {
            n: share(v, k, owner=comm.SERVER, frac_bits=opts.frac_bits).data
            for (n, v), k in zip(sorted(prepared.items()), keys, strict=True)
        }
        base = self.dealer.new_mask_id() * 10_000
        setup = Program(partial(setup_fn, cfg=cfg, base_id=base, embedding=opts.embedding))
        self.setup_cost = setup.cost(shares)
        self.weights = setup(self.dealer.next_keys(), shares)
        self.program = Program(partial(forward, cfg=cfg, opts=opts), mode=mode)
        self._warmed: set[tuple[tuple[int, ...], ...]] = set()

    @classmethod
    def from_checkpoint(cls, path: str, **kwargs: Any) -> SecureModel:
        """Load a ``secmoe train`` checkpoint (``.npz``) and set it up for private inference."""
        from ..training import EncoderConfig, read_checkpoint

        meta, flat, vocab_map = read_checkpoint(path)
        cfg = EncoderConfig.from_dict(meta["config"])
        model = cls(cfg, flat, label_names=tuple(meta.get("label_names", ())), **kwargs)
        model.meta, model.vocab_map = meta, vocab_map
        model.max_len = int(meta["tokenizer"]["max_len"])
        model._float_params = flat
        return model

    # ---------------------------------------------------------------------------------------
    # text in, predictions out (the client's side: tokenization and decoding are local)
    # ---------------------------------------------------------------------------------------
    meta: dict[str, Any] = {}
    vocab_map: np.ndarray | None = None
    max_len: int = 128
    _float_params: dict[str, np.ndarray] | None = None
    _tokenizer: Any = None
    _plain: Any = None
    last_timing: dict[str, float] = {}

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Tokenizes on the client: ``(ids, mask)`` ``[N, T]`` with ``T`` the longest text
        rounded up to a multiple of 16 (at most the checkpoint's ``max_len``), so that a few
        compiled programs serve every query."""
        if isinstance(texts, str):
            raise TypeError("encode: pass a list of texts, not a single string")
        texts = list(texts)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError("encode: every text must be a non-empty string")
        if self._tokenizer is None:
            from ..training import Tokenizer

            self._tokenizer = Tokenizer(self.max_len, vocab_map=self.vocab_map)
        ids, mask = self._tokenizer.encode(texts)
        t = bucket_length(int(mask.sum(1).max()), self.max_len)
        return ids[:, :t], mask[:, :t]

    def plaintext_logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The same checkpoint evaluated in the clear (float32 Flax model): the reference the
        private logits are checked against."""
        if self._float_params is None:
            raise RuntimeError("plaintext_logits needs a model built by from_checkpoint")
        if self._plain is None:
            from flax import nnx

            from ..training._checkpoint import flat_to_model

            flat32 = {k: np.asarray(v, np.float32) for k, v in self._float_params.items()}
            graph, state = nnx.split(flat_to_model(self.cfg, flat32))
            fn = jax.jit(lambda st, i, m: nnx.merge(graph, st)(i, m).logits)
            self._plain = (fn, state)
        fn, state = self._plain
        return np.asarray(fn(state, jnp.asarray(ids), jnp.asarray(mask)), np.float64)

    def classify(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """Private classification of ``texts`` in one batch: per text the predicted label, the
        private logits, the plaintext logits and prediction of the same model, and whether
        they agree."""
        ids, mask = self.encode(texts)
        private = self.logits(ids, mask)
        plain = self.plaintext_logits(ids, mask)
        names = self.label_names or tuple(str(i) for i in range(private.shape[1]))
        out = []
        for text, lp, lq in zip(texts, private, plain, strict=True):
            i, j = int(np.argmax(lp)), int(np.argmax(lq))
            out.append(
                {
                    "text": text,
                    "label": names[i],
                    "probability": float(_softmax(lp)[i]),
                    "private_logits": [float(v) for v in lp],
                    "plaintext_logits": [float(v) for v in lq],
                    "plaintext_label": names[j],
                    "agree": i == j,
                    "max_logit_diff": float(np.max(np.abs(lp - lq))),
                }
            )
        return out

    def _inputs(self, ids: np.ndarray, mask: np.ndarray) -> tuple[jax.Array, jax.Array]:
        import secrets

        ids = np.asarray(ids)
        if ids.ndim != 2 or np.shape(mask) != ids.shape:
            raise ValueError(
                f"SecureModel: ids and mask must be [B, T], got {ids.shape}, {np.shape(mask)}"
            )
        if ids.min() < 0 or ids.max() >= self.cfg.vocab_size:
            raise ValueError(f"SecureModel: token ids must be in [0, {self.cfg.vocab_size})")
        key = jax.random.key(secrets.randbits(62))
        if self.opts.embedding == "private":
            onehot = np.eye(self.cfg.vocab_size, dtype=np.float64)[ids]
            tokens = share(onehot, key, owner=comm.CLIENT, frac_bits=0).data
        else:  # public table: the client looks its tokens up and shares the embeddings
            emb = self.public_table[ids]
            tokens = share(emb, key, owner=comm.CLIENT, frac_bits=self.opts.frac_bits).data
        m = np.asarray(mask, np.int32)
        return tokens, jnp.asarray(np.stack([m, m]))

    def logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Private logits ``[B, labels]`` (what the client decodes from its revealed shares)."""
        import time

        tokens, mask2 = self._inputs(ids, mask)
        keys = self.dealer.next_keys()
        compile_seconds = 0.0
        shape = (tokens.shape, mask2.shape)
        if shape not in self._warmed:  # a new shape: compile both phases at once (threads)
            t0 = time.perf_counter()
            self.program.warm(keys, tokens, mask2, self.weights)
            self._warmed.add(shape)
            compile_seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        # the dealer's phase (deployed: ahead of time, shipped to the parties), then the
        # parties' online phase; timed separately
        mat = self.program.material(keys, tokens, mask2, self.weights)
        jax.block_until_ready(mat)
        t2 = time.perf_counter()
        out = jax.block_until_ready(self.program.online(mat, tokens, mask2, self.weights))
        self.last_timing = {
            "compile_seconds": compile_seconds,
            "dealer_seconds": t2 - t1,
            "online_seconds": time.perf_counter() - t2,
        }
        with jax.enable_x64(True):
            from ..kernels import decode

            return np.asarray(decode(jnp.asarray(out[comm.CLIENT]), self.opts.frac_bits))

    def release(self) -> None:
        """Free every compiled program (private and plaintext) and dealer generator.

        The shares and masked weights stay; the next query compiles its shape again.
        :func:`evaluate` calls this when it leaves a sequence bucket for a longer one.
        """
        from .. import dealer as _dealer

        self.program.clear_cache()
        _dealer.clear_caches()
        self._warmed.clear()
        self._plain = None

    def cost(self, batch: int, seq: int) -> Cost:
        """Exact online/offline cost of one query batch (traced, not run)."""
        width = self.cfg.vocab_size if self.opts.embedding == "private" else self.cfg.hidden
        tokens = jax.ShapeDtypeStruct((2, batch, seq, width), jnp.uint64)
        mask = jax.ShapeDtypeStruct((2, batch, seq), jnp.int32)
        return self.program.cost(tokens, mask, self.weights)
