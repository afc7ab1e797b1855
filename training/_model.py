"""A post-LN BERT-style encoder (MiniLM layout) in Flax NNX, with selectable nonlinearities.

Layout (names follow the Hugging Face BERT checkpoint, so MiniLM loads by renaming only):

- ``embeddings``: ``word_embeddings``, ``position_embeddings``, ``token_type_embeddings``,
  summed, then ``layer_norm``.
- ``layers[i]`` (post-LN, as BERT): ``query``/``key``/``value`` -> scores
  ``q k^T / sqrt(d_head)`` -> softmax (``secmoe_jax.approx.softmax``, padded keys get 0) ->
  ``attention_output`` dense -> residual -> ``attention_norm``; FFN ``intermediate`` dense ->
  GeLU (``secmoe_jax.approx.gelu``) -> ``output`` dense (or an :class:`MoEFFN` ``moe``) ->
  residual -> ``output_norm``.
- Head: mean pooling over real tokens -> ``classifier`` dense (no pooler/tanh).

``__call__`` returns an :class:`EncoderOutput` with every hidden state (the embedding output
first) and every layer's pre-softmax attention scores with padded positions set to 0, which is
what stage 1 of the distillation matches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from secmoe_jax import approx

from ._config import EncoderConfig
from ._moe import MoEFFN


class EncoderOutput(NamedTuple):
    """Outputs of :class:`Encoder` (B = batch, T = sequence, D = hidden, H = heads)."""

    logits: jax.Array | None  # [B, num_labels] (None when num_labels == 0)
    pooled: jax.Array  # [B, D] mean of the last hidden state over real tokens
    hidden_states: tuple[jax.Array, ...]  # layers + 1 arrays [B, T, D], embedding output first
    attention_scores: tuple[jax.Array, ...]  # layers arrays [B, H, T, T], masked entries 0
    aux_loss: jax.Array  # [] sum over layers of the MoE load-balancing losses (0 if dense)


def _dense(d_in: int, d_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(
        d_in,
        d_out,
        kernel_init=nnx.initializers.normal(0.02),
        param_dtype=jnp.float32,
        dtype=jnp.float32,
        rngs=rngs,
    )


def _norm(cfg: EncoderConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        cfg.hidden,
        epsilon=cfg.layer_norm_eps,
        param_dtype=jnp.float32,
        dtype=jnp.float32,
        rngs=rngs,
    )


class Embeddings(nnx.Module):
    """Word + position + token-type embeddings, then LayerNorm."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        kw = dict(embedding_init=init, param_dtype=jnp.float32, dtype=jnp.float32, rngs=rngs)
        self.word_embeddings = nnx.Embed(cfg.vocab_size, cfg.hidden, **kw)
        self.position_embeddings = nnx.Embed(cfg.max_len, cfg.hidden, **kw)
        self.token_type_embeddings = nnx.Embed(cfg.type_vocab, cfg.hidden, **kw)
        self.layer_norm = _norm(cfg, rngs)

    def __call__(self, ids_bt: jax.Array, type_ids_bt: jax.Array) -> jax.Array:
        t = ids_bt.shape[1]
        x = self.word_embeddings(ids_bt) + self.position_embeddings(jnp.arange(t)[None, :])
        return self.layer_norm(x + self.token_type_embeddings(type_ids_bt))


class Layer(nnx.Module):
    """One post-LN Transformer layer (dense FFN or MoE FFN)."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d = cfg.hidden
        self.query = _dense(d, d, rngs)
        self.key = _dense(d, d, rngs)
        self.value = _dense(d, d, rngs)
        self.attention_output = _dense(d, d, rngs)
        self.attention_norm = _norm(cfg, rngs)
        if cfg.moe is None:
            self.intermediate = _dense(d, cfg.ffn, rngs)
            self.output = _dense(cfg.ffn, d, rngs)
        else:
            self.moe = MoEFFN(cfg, rngs=rngs)
        self.output_norm = _norm(cfg, rngs)

    def __call__(
        self, x_btd: jax.Array, mask_bt: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns ``(y [B, T, D], scores [B, H, T, T] with masked entries 0, aux_loss [])``."""
        cfg = self.cfg
        b, t, _ = x_btd.shape
        h, dh = cfg.heads, cfg.head_dim

        def split(z):
            return z.reshape(b, t, h, dh)

        q, k, v = split(self.query(x_btd)), split(self.key(x_btd)), split(self.value(x_btd))
        scores = jnp.einsum("bthd,bshd->bhts", q, k) / jnp.sqrt(jnp.float32(dh))
        keep = mask_bt[:, None, :, None].astype(bool) & mask_bt[:, None, None, :].astype(bool)
        keep = jnp.broadcast_to(keep, scores.shape)
        # Padded keys get probability 0; rows of padded queries are discarded at pooling.
        key_keep = jnp.broadcast_to(mask_bt[:, None, None, :].astype(bool), scores.shape)
        probs = approx.softmax(
            scores, variant=cfg.softmax, axis=-1, where=key_keep, c=cfg.softmax_c
        )
        ctx = jnp.einsum("bhts,bshd->bthd", probs, v).reshape(b, t, h * dh)
        x_btd = self.attention_norm(x_btd + self.attention_output(ctx))
        if cfg.moe is None:
            ff = self.output(approx.gelu(self.intermediate(x_btd), variant=cfg.gelu))
            aux = jnp.zeros((), jnp.float32)
        else:
            ff, aux = self.moe(x_btd, mask_bt)
        y = self.output_norm(x_btd + ff)
        return y, jnp.where(keep, scores, 0.0), aux


class Encoder(nnx.Module):
    """BERT-style encoder with a mean-pooling classification head.

    Args:
      cfg: the :class:`EncoderConfig`.
      rngs: ``nnx.Rngs`` for parameter initialisation (keyword-only).
    """

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embeddings = Embeddings(cfg, rngs=rngs)
        self.layers = nnx.List([Layer(cfg, rngs=rngs) for _ in range(cfg.layers)])
        if cfg.num_labels > 0:
            self.classifier = _dense(cfg.hidden, cfg.num_labels, rngs)

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        token_type_ids: jax.Array | None = None,
    ) -> EncoderOutput:
        """Runs the encoder.

        Args:
          input_ids: ``[B, T]`` int token ids (T <= cfg.max_len).
          attention_mask: ``[B, T]`` 1 = real token, 0 = padding; default all ones.
          token_type_ids: ``[B, T]`` segment ids; default zeros.
        """
        input_ids = jnp.asarray(input_ids, jnp.int32)
        if input_ids.ndim != 2 or input_ids.shape[1] > self.cfg.max_len:
            raise ValueError(
                f"Encoder: input_ids must be [B, T<={self.cfg.max_len}], "
                f"got shape {input_ids.shape}"
            )
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        mask = jnp.asarray(attention_mask, jnp.int32)
        x = self.embeddings(input_ids, jnp.asarray(token_type_ids, jnp.int32))
        hidden, scores = [x], []
        aux = jnp.zeros((), jnp.float32)
        for layer in self.layers:
            x, s, a = layer(x, mask)
            hidden.append(x)
            scores.append(s)
            aux = aux + a
        pooled = mean_pool(x, mask)
        logits = self.classifier(pooled) if self.cfg.num_labels > 0 else None
        return EncoderOutput(logits, pooled, tuple(hidden), tuple(scores), aux)


def mean_pool(x_btd: jax.Array, mask_bt: jax.Array) -> jax.Array:
    """Mean of ``x_btd`` over the real tokens (sentence-transformers mean pooling)."""
    m = jnp.asarray(mask_bt, jnp.float32)[..., None]
    return jnp.sum(x_btd * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1e-9)


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters of ``model``."""
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))
