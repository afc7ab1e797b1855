"""Model configurations: frozen, hashable dataclasses and named presets.

Nonlinearity choices are the variant names of :mod:`secmoe_jax.approx` (``gelu``: one of
``GELU_VARIANTS``; ``softmax``: one of ``SOFTMAX_VARIANTS``), so that a student computes in
plaintext exactly what the secure protocols compute. LayerNorm is always exact (the protocols
approximate its inverse square root, not its form).
"""

from __future__ import annotations

import dataclasses
from typing import Any

_FFN_KINDS = ("gelu", "swiglu", "geglu")


def _check_variant(kind: str, value: str) -> None:
    """Raises ValueError if ``value`` is not a variant that ``secmoe_jax.approx`` provides."""
    from secmoe_jax import approx

    allowed = {
        "gelu": approx.GELU_VARIANTS,
        "silu": approx.SILU_VARIANTS,
        "softmax": approx.SOFTMAX_VARIANTS,
    }[kind]
    if value not in allowed:
        raise ValueError(f"unknown {kind} variant {value!r}; choose one of {tuple(allowed)}")


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    """Switch-style mixture of experts replacing every FFN of the encoder."""

    experts: int = 8  # E, number of experts per layer
    top_k: int = 1  # experts per token: 1 (Switch) or 2 (GShard-style, gates renormalised)
    capacity_factor: float = 1.25  # C = ceil(capacity_factor * T * top_k / E), T = padded length
    aux_loss_weight: float = 0.01  # weight of the Switch load-balancing loss E * sum_e f_e P_e
    ffn_kind: str = "gelu"  # expert body: "gelu" (dense-GeLU-dense), "swiglu" or "geglu"
    router: str = "exact"  # softmax variant for the gate probabilities: "exact" or "2quad"
    router_init_std: float = 0.02  # std of the router weight initialisation (normal)

    def __post_init__(self) -> None:
        if self.experts < 1:
            raise ValueError(f"MoEConfig.experts must be >= 1, got {self.experts}")
        if self.top_k not in (1, 2) or self.top_k > self.experts:
            raise ValueError(f"MoEConfig.top_k must be 1 or 2 and <= experts, got {self.top_k}")
        if not self.capacity_factor > 0:
            raise ValueError(f"MoEConfig.capacity_factor must be > 0, got {self.capacity_factor}")
        if self.ffn_kind not in _FFN_KINDS:
            raise ValueError(
                f"MoEConfig.ffn_kind must be one of {_FFN_KINDS}, got {self.ffn_kind!r}"
            )
        _check_variant("softmax", self.router)


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """A post-LN BERT encoder (the MiniLM / BERT layout) with a mean-pooling classifier head."""

    vocab_size: int = 30522  # rows of the word-embedding table
    hidden: int = 384  # model width D
    layers: int = 6  # number of Transformer layers
    heads: int = 12  # attention heads; hidden must be divisible by heads
    ffn: int = 1536  # FFN inner width F (per expert in the MoE variant)
    max_len: int = 512  # rows of the position-embedding table (longest sequence)
    type_vocab: int = 2  # rows of the token-type (segment) embedding table
    gelu: str = "exact"  # GeLU variant of secmoe_jax.approx.gelu (FFN activation)
    softmax: str = "exact"  # softmax variant of secmoe_jax.approx.softmax (attention)
    num_labels: int = 2  # classes of the classification head (0: no head)
    moe: MoEConfig | None = None  # None: dense FFN; otherwise every FFN becomes an MoE layer
    layer_norm_eps: float = 1e-12  # LayerNorm epsilon (MiniLM uses 1e-12)
    silu: str = "exact"  # SiLU variant of secmoe_jax.approx.silu (only for ffn_kind "swiglu")
    softmax_c: float = 5.0  # the shift c of 2Quad, (x + c)^2 / sum (x + c)^2

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        for name in ("vocab_size", "hidden", "layers", "heads", "ffn", "max_len", "type_vocab"):
            if getattr(self, name) < 1:
                raise ValueError(f"EncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        _check_variant("gelu", self.gelu)
        _check_variant("softmax", self.softmax)
        _check_variant("silu", self.silu)

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.hidden // self.heads

    def replace(self, **changes: Any) -> EncoderConfig:
        """Returns a copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the form stored in checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``TypeError``."""
        d = dict(d)
        if d.get("moe") is not None:
            d["moe"] = MoEConfig(**d["moe"])
        return cls(**d)


def minilm_l6(num_labels: int = 2) -> EncoderConfig:
    """all-MiniLM-L6-v2: 6 layers, hidden 384, 12 heads, FFN 1536, exact nonlinearities."""
    return EncoderConfig(num_labels=num_labels)


def tiny(num_labels: int = 2, vocab_size: int = 30522) -> EncoderConfig:
    """A 2-layer, width-64 encoder for tests and ``--tiny`` runs (seconds on a CPU)."""
    return EncoderConfig(
        vocab_size=vocab_size,
        hidden=64,
        layers=2,
        heads=4,
        ffn=128,
        max_len=64,
        num_labels=num_labels,
    )


def student_a(num_labels: int = 2) -> EncoderConfig:
    """Student (a): MiniLM shape, GeLU "secmoe6" (six-segment quadratic), softmax "2quad"."""
    return minilm_l6(num_labels).replace(gelu="secmoe6", softmax="2quad")


def student_b(num_labels: int = 2) -> EncoderConfig:
    """Student (b): MiniLM shape, GeLU "secformer" (segmented erf Fourier), softmax "2quad"."""
    return minilm_l6(num_labels).replace(gelu="secformer", softmax="2quad")


def student_c(num_labels: int = 2) -> EncoderConfig:
    """Student (c), MPCFormer's baseline: GeLU "quad" (0.125x^2 + 0.25x + 0.5), "2quad"."""
    return minilm_l6(num_labels).replace(gelu="quad", softmax="2quad")


def student_d(num_labels: int = 2) -> EncoderConfig:
    """Student (d): every FFN an 8-expert top-1 MoE (upcycled), "secmoe6" + "2quad".

    The router starts small (std 1e-3) so that every gate starts at ~1/8 and the upcycled
    experts, whose outputs are scaled by 8, start as the teacher's FFN (see ``upcycle``).
    """
    moe = MoEConfig(
        experts=8, top_k=1, capacity_factor=1.25, aux_loss_weight=0.01, router_init_std=1e-3
    )
    return student_a(num_labels).replace(moe=moe)


def student_e(num_labels: int = 2, vocab_size: int = 30522) -> EncoderConfig:
    """Student (e), the embedded demo model: 2 layers, hidden 192, 6 heads, FFN 768.

    Stored with a pruned vocabulary and float16 weights it stays under 8 MB. Initialised from
    the teacher by the mapping in :func:`secmoe_jax.training.init_student_from_teacher`.
    """
    return EncoderConfig(
        vocab_size=vocab_size,
        hidden=192,
        layers=2,
        heads=6,
        ffn=768,
        max_len=128,
        gelu="secmoe6",
        softmax="2quad",
        num_labels=num_labels,
    )


STUDENTS = {"a": student_a, "b": student_b, "c": student_c, "d": student_d, "e": student_e}
