"""Pseudo-random generation of ring elements behind a small interface.

Shares and dealer masks are uniform elements of Z_2^64 drawn from a PRG keyed by a
``jax.random`` key. The default generator is ``jax.random.bits`` (threefry2x32): fast, jittable
and reproducible, but not a cryptographic PRG (the JAX documentation says so). A deployment
plugs in a cryptographic one (AES-CTR or ChaCha20 keyed from the same seeds) by implementing
:class:`Prg`; nothing else changes.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import jax
import jax.numpy as jnp

from ._ring import Ring, require_x64


class Prg(Protocol):
    """What the library needs from a pseudo-random generator."""

    def ring(self, key: jax.Array, shape: tuple[int, ...]) -> Ring:
        """Uniform ``uint64`` elements of the given shape."""
        ...


@dataclasses.dataclass(frozen=True)
class ThreefryPrg:
    """``jax.random.bits`` on ``uint64``: the default (not cryptographic, see module doc)."""

    def ring(self, key: jax.Array, shape: tuple[int, ...]) -> Ring:
        require_x64("ThreefryPrg.ring")
        return jax.random.bits(key, tuple(shape), jnp.uint64)


DEFAULT_PRG: Prg = ThreefryPrg()


def uniform_ring(key: jax.Array, shape: tuple[int, ...], prg: Prg = DEFAULT_PRG) -> Ring:
    """Uniform elements of Z_2^64 of ``shape`` from ``key``."""
    return prg.ring(key, tuple(shape))
