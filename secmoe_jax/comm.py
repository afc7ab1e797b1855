"""The one communication seam between the two parties, and its cost ledger.

Protocols are per-party SPMD functions run under a named axis ``"party"`` (``jax.vmap`` in
simulate mode, ``jax.shard_map`` on two devices). Data crosses between the parties only here:

* :func:`open` — both parties send their shares of a PyTree and both learn the sum
  (``lax.psum`` over ``"party"``, which wraps modulo 2^64 on ``uint64``). One call = one round.
* :func:`reveal_to` — only the other party sends; the receiving party learns the value, the
  other gets zeros. One call = one round.

Every call records, at trace time, one round and the bytes each party sends into the active
:class:`Ledger` (if any), so the online cost of any computation follows from tracing it with
static shapes. Protocols put everything that one round needs into one call.

For tests, :func:`openings` collects the opened values of a traced computation (see
``runtime.Program(record_openings=True)``), so the "every opened value is masked" property can
be checked for every protocol with one helper.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .kernels import check_ring

AXIS = "party"
SERVER = 0  # P0: the model owner
CLIENT = 1  # P1: the data owner
PARTIES = 2


@dataclasses.dataclass
class Ledger:
    """Trace-time record of online communication (filled by :func:`open`/:func:`reveal_to`).

    Attributes:
      rounds: number of communication rounds (one per call).
      sent: bytes sent by each party, ``[P0, P1]``.
      log: one entry per round: ``(label, kind, bytes per party, leaf shapes)``.
    """

    rounds: int = 0
    sent: list[int] = dataclasses.field(default_factory=lambda: [0, 0])
    log: list[tuple[str, str, tuple[int, int], tuple[tuple[int, ...], ...]]] = dataclasses.field(
        default_factory=list
    )


_LEDGERS: contextvars.ContextVar[tuple[Ledger, ...]] = contextvars.ContextVar(
    "secmoe_ledgers", default=()
)
_OPENINGS: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "secmoe_openings", default=None
)


@contextlib.contextmanager
def ledger() -> Iterator[Ledger]:
    """Collect the communication of everything traced inside the ``with`` block."""
    led = Ledger()
    token = _LEDGERS.set(_LEDGERS.get() + (led,))
    try:
        yield led
    finally:
        _LEDGERS.reset(token)


@contextlib.contextmanager
def openings() -> Iterator[list]:
    """Collect ``(label, opened tree)`` for every :func:`open` traced inside the block.

    The collected values are tracers of the enclosing trace; the runtime returns them as extra
    outputs. Used by the masked-openings tests.
    """
    found: list = []
    token = _OPENINGS.set(found)
    try:
        yield found
    finally:
        _OPENINGS.reset(token)


@contextlib.contextmanager
def _no_recording() -> Iterator[None]:
    token_l = _LEDGERS.set(())
    token_o = _OPENINGS.set(None)
    try:
        yield
    finally:
        _LEDGERS.reset(token_l)
        _OPENINGS.reset(token_o)


def _record(label: str, kind: str, leaves: list[jax.Array], senders: tuple[int, ...]) -> None:
    nbytes = int(sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves))
    per_party = tuple(nbytes if p in senders else 0 for p in range(PARTIES))
    shapes = tuple(tuple(x.shape) for x in leaves)
    for led in _LEDGERS.get():
        led.rounds += 1
        for p in range(PARTIES):
            led.sent[p] += per_party[p]
        led.log.append((label, kind, per_party, shapes))


def _leaves(where: str, tree: Any) -> list[jax.Array]:
    """The leaves to send: ``uint64`` shares, or ``uint32`` words (4 bytes each) for values
    reduced modulo a power of two ``<= 2^32`` (the sum wraps modulo 2^32)."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"{where}: nothing to send (empty tree)")
    check_ring(where, *[x for x in leaves if getattr(x, "dtype", None) != jnp.uint32])
    return leaves


def party_index() -> jax.Array:
    """This party's index (0 = server, 1 = client) inside a per-party function."""
    return lax.axis_index(AXIS)


def open(tree: Any, *, label: str = "open") -> Any:  # noqa: A001 - the protocol's own word
    """Open a PyTree of ``uint64`` shares to both parties: one round.

    Each party sends every leaf's share (8 bytes per element) and receives the other's; the
    result is the sum modulo 2^64, identical on both parties.

    Args:
      tree: PyTree of this party's ``uint64`` shares (or ``uint32`` words of values reduced
        modulo a power of two, 4 bytes each). Every value in it must be masked by fresh
        dealer randomness; opening an unmasked secret is a leak.
      label: name of the opening in the ledger and in recorded openings.

    Returns:
      The opened (public) PyTree.
    """
    leaves = _leaves("comm.open", tree)
    _record(label, "open", leaves, senders=(0, 1))
    opened = lax.psum(tree, AXIS)
    found = _OPENINGS.get()
    if found is not None:
        found.append((label, opened))
    return opened


def reveal_to(tree: Any, party: int, *, label: str = "reveal") -> Any:
    """Reveal a PyTree of shares to one party only: one round, the other party sends.

    Args:
      tree: this party's ``uint64`` shares.
      party: the static index of the party that learns the value.

    Returns:
      On ``party``: the value. On the other party: zeros of the same shapes.
    """
    if party not in (0, 1):
        raise ValueError(f"comm.reveal_to: party must be 0 or 1, got {party!r}")
    leaves = _leaves("comm.reveal_to", tree)
    _record(label, f"reveal_to_{party}", leaves, senders=(1 - party,))
    opened = lax.psum(tree, AXIS)
    is_receiver = party_index() == party
    return jax.tree_util.tree_map(lambda v: jnp.where(is_receiver, v, jnp.zeros_like(v)), opened)


@dataclasses.dataclass(frozen=True)
class Network:
    """A network for cost estimates.

    Attributes:
      name: label.
      bandwidth_bps: bits per second in each direction (full duplex).
      latency_s: one-way latency per round, seconds.
    """

    name: str
    bandwidth_bps: float
    latency_s: float


LAN = Network("LAN", 1e9, 0.5e-3)  # SecMoE's LAN: 1 Gbps, 0.5 ms
WAN = Network("WAN", 400e6, 4e-3)  # SecMoE's WAN: 400 Mbps, 4 ms


def estimate_seconds(
    rounds: int, bytes_per_party: tuple[int, int], compute_seconds: float, network: Network
) -> float:
    """Wall-clock estimate: compute + rounds * latency + max bytes one party sends / bandwidth.

    Both parties send at once on a full-duplex link, so a round costs the larger of the two
    parties' transfers.
    """
    transfer = 8.0 * max(bytes_per_party) / network.bandwidth_bps
    return float(compute_seconds + rounds * network.latency_s + transfer)
