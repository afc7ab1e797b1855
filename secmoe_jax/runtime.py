"""Execution modes for per-party protocols, and the user-facing share / run / reveal API.

A per-party function ``fn(*args, mat)`` receives this party's shares (``Secret`` values and
other PyTrees whose leaves carry the party's slice) and a :class:`~secmoe_jax.dealer.Material`
source, and returns this party's outputs. :class:`Program` runs it in one of two modes, with
bit-identical results:

=============  ==================================================================  ==============
mode           how                                                                 use
=============  ==================================================================  ==============
``simulate``   ``jax.vmap(per_party, axis_name="party")`` over a leading axis of    tests, one GPU
               size 2, inside one ``jax.jit`` together with the dealer
``devices``    ``jax.shard_map`` over a two-device mesh with axis ``"party"``;      one GPU each
               each device holds one party's shares and material
=============  ==================================================================  ==============

Every entry point scopes ``jax.enable_x64(True)`` around its tracing and execution, so users do
not have to flip x64 globally (which would change the default dtypes of their own Flax code).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from . import comm
from . import dealer as _dealer
from .kernels import DEFAULT_FRAC_BITS, Ring, decode, encode, uniform_ring


@struct.dataclass
class Secret:
    """A secret-shared fixed-point array.

    Attributes:
      data: ``uint64`` shares, ``[P=2, ...]`` outside per-party code (party 0 = server first);
        inside a per-party function the same class holds that party's ``[...]`` share.
      frac_bits: static number of fractional bits of the encoding.
    """

    data: jax.Array
    frac_bits: int = struct.field(pytree_node=False, default=DEFAULT_FRAC_BITS)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the shared value (without the party axis)."""
        return tuple(self.data.shape[1:])


class Mode(enum.Enum):
    """How the two parties are executed."""

    SIMULATE = "simulate"
    DEVICES = "devices"


def share(
    x: Any,
    key: jax.Array,
    *,
    owner: int = comm.CLIENT,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Secret:
    """Secret-share a float array held by ``owner``.

    The non-owner's share is a uniform ring element ``r`` from a PRG seed both parties know
    (so sharing needs no online traffic); the owner keeps ``encode(x) - r``.

    Args:
      x: float array; checked eagerly (finite, inside the fixed-point range).
      key: PRG key of this sharing; use each key once.
      owner: ``comm.SERVER`` (0) or ``comm.CLIENT`` (1).
      frac_bits: fractional bits of the encoding.

    Returns:
      A :class:`Secret` with ``data`` of shape ``[2, *x.shape]``.
    """
    if owner not in (0, 1):
        raise ValueError(f"share: owner must be 0 (server) or 1 (client), got {owner!r}")
    with jax.enable_x64(True):
        enc = encode(x, frac_bits)
        r = uniform_ring(key, enc.shape)
        parts = [r, r]
        parts[owner] = enc - r
        return Secret(jnp.stack(parts), frac_bits)


def share_ring(x: Ring, key: jax.Array, *, owner: int = comm.CLIENT) -> jax.Array:
    """Secret-share a ``uint64`` array (already encoded); returns ``[2, ...]`` shares."""
    with jax.enable_x64(True):
        r = uniform_ring(key, x.shape)
        parts = [r, r]
        parts[owner] = x - r
        return jnp.stack(parts)


def reveal(x: Secret | jax.Array, *, frac_bits: int | None = None) -> np.ndarray:
    """Reconstruct and decode a shared value on the host (float64 numpy array).

    Args:
      x: a :class:`Secret`, or raw ``[2, ...]`` ``uint64`` shares.
      frac_bits: required for raw shares; defaults to the Secret's.
    """
    with jax.enable_x64(True):
        if isinstance(x, Secret):
            data, f = x.data, x.frac_bits if frac_bits is None else frac_bits
        else:
            data, f = jnp.asarray(x), DEFAULT_FRAC_BITS if frac_bits is None else frac_bits
        if data.ndim < 1 or data.shape[0] != 2:
            raise ValueError(
                f"reveal: expected shares with a leading party axis of 2, got {data.shape}"
            )
        return np.asarray(decode(data[0] + data[1], f))


def reveal_ring(x: Secret | jax.Array) -> np.ndarray:
    """Reconstruct shares as ``uint64`` ring elements (no decoding)."""
    with jax.enable_x64(True):
        data = x.data if isinstance(x, Secret) else jnp.asarray(x)
        return np.asarray(data[0] + data[1])


@dataclasses.dataclass(frozen=True)
class Cost:
    """Online and offline cost of a computation (a pure function of its shapes).

    Attributes:
      rounds: communication rounds.
      bytes_sent: bytes each party sends, ``(P0, P1)``.
      offline_bytes: bytes of dealer material each party stores.
      material: number of dealer items per kind.
    """

    rounds: int
    bytes_sent: tuple[int, int]
    offline_bytes: int = 0
    material: tuple[tuple[str, int], ...] = ()

    @property
    def online_bytes(self) -> int:
        """Total online bytes, both parties together."""
        return int(sum(self.bytes_sent))

    def estimate(self, compute_seconds: float, network: comm.Network) -> float:
        """Seconds on ``network`` (see :func:`comm.estimate_seconds`)."""
        return comm.estimate_seconds(self.rounds, self.bytes_sent, compute_seconds, network)


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype), tree)


def _signature(args: Sequence[Any]) -> Any:
    leaves, treedef = jax.tree.flatten(args)
    return treedef, tuple((tuple(np.shape(x)), np.dtype(x.dtype)) for x in leaves)


def _check_party_axis(where: str, args: Sequence[Any]) -> None:
    for leaf in jax.tree.leaves(args):
        shape = np.shape(leaf)
        if len(shape) < 1 or shape[0] != 2:
            raise ValueError(
                f"{where}: every input leaf needs a leading party axis of size 2 "
                f"(shares of both parties), got shape {shape}; share inputs with secmoe_jax.share"
            )


class Program:
    """A per-party function compiled for one execution mode.

    Args:
      fn: per-party function ``fn(*args, mat) -> outputs``. It must be a function of the input
        shapes only in what it opens and what material it takes (no data-dependent Python
        control flow: the arguments are tracers anyway).
      mode: ``"simulate"`` or ``"devices"``.
      devices: for ``"devices"``, the two devices (default: the first two of ``jax.devices()``).
      record_openings: also return every opened value (a debugging/test hook).

    Calling ``program(keys, *args)`` generates the material and runs both parties in one jit and
    returns outputs with a leading party axis (plus ``[(label, opened[2, ...]), ...]`` when
    recording openings). :meth:`material` and :meth:`online` split the two phases (benchmarks).
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        mode: str | Mode = Mode.SIMULATE,
        devices: Sequence[jax.Device] | None = None,
        record_openings: bool = False,
    ) -> None:
        self.fn = fn
        self.mode = Mode(mode)
        self.record_openings = record_openings
        self._plans: dict[Any, _dealer.Plan] = {}
        self._labels: dict[Any, list[str]] = {}
        self._mesh = None
        if self.mode is Mode.DEVICES:
            devs = list(devices) if devices is not None else jax.devices()[:2]
            if len(devs) < 2:
                raise RuntimeError(
                    "Program(mode='devices') needs two JAX devices, found "
                    f"{len(jax.devices())}; on CPU call "
                    "jax.config.update('jax_num_cpu_devices', 2) before JAX initialises its backend"
                )
            self._mesh = Mesh(np.array(devs[:2]), (comm.AXIS,))
        self._run_jit = jax.jit(self._run, static_argnums=0)
        self._online_jit = jax.jit(self._online, static_argnums=0)

    # -- planning ---------------------------------------------------------------------------
    def _trace(self, args: Sequence[Any], led: comm.Ledger | None) -> _dealer.Plan:
        rec = _dealer.Recorder()

        def per_party(*a):
            return self.fn(*a, rec)

        with comm._no_recording():
            if led is None:
                jax.eval_shape(jax.vmap(per_party, axis_name=comm.AXIS), *args)
            else:
                token = comm._LEDGERS.set((led,))
                try:
                    jax.eval_shape(jax.vmap(per_party, axis_name=comm.AXIS), *args)
                finally:
                    comm._LEDGERS.reset(token)
        return rec.plan()

    def plan(self, *args: Any) -> _dealer.Plan:
        """The dealer requests of ``fn`` on inputs shaped like ``args`` (cached per shapes)."""
        _check_party_axis("Program", args)
        sig = _signature(args)
        if sig not in self._plans:
            with jax.enable_x64(True):
                self._plans[sig] = self._trace(_abstract(args), None)
        return self._plans[sig]

    def cost(self, *args: Any) -> Cost:
        """Rounds, bytes and offline material of ``fn`` on inputs shaped like ``args``."""
        _check_party_axis("cost", args)
        led = comm.Ledger()
        with jax.enable_x64(True):
            plan = self._trace(_abstract(args), led)
        return Cost(
            rounds=led.rounds,
            bytes_sent=(led.sent[0], led.sent[1]),
            offline_bytes=plan.offline_bytes(),
            material=tuple(sorted(plan.summary().items())),
        )

    # -- execution --------------------------------------------------------------------------
    def _per_party(self, plan: _dealer.Plan, items: list[Any], args: Sequence[Any]) -> Any:
        stream = _dealer.Stream(plan, items)
        if self.record_openings:
            with comm.openings() as found:
                out = self.fn(*args, stream)
            stream.finish()
            self._labels[plan] = [label for label, _ in found]
            return out, [value for _, value in found]
        out = self.fn(*args, stream)
        stream.finish()
        return out

    def _online(self, plan: _dealer.Plan, items: list[Any], args: Sequence[Any]) -> Any:
        if self.mode is Mode.SIMULATE:
            return jax.vmap(lambda it, a: self._per_party(plan, it, a), axis_name=comm.AXIS)(
                items, args
            )

        def body(it, a):
            it, a = jax.tree.map(lambda x: x[0], (it, a))
            out = self._per_party(plan, it, a)
            return jax.tree.map(lambda x: jnp.expand_dims(x, 0), out)

        return jax.shard_map(body, mesh=self._mesh, in_specs=P(comm.AXIS), out_specs=P(comm.AXIS))(
            items, args
        )

    def _run(self, plan: _dealer.Plan, keys: _dealer.DealerKeys, args: Sequence[Any]) -> Any:
        items = _dealer.generate(plan, keys)
        return self._online(plan, items, args)

    def _finish(self, plan: _dealer.Plan, out: Any) -> Any:
        if not self.record_openings:
            return out
        out, values = out
        return out, list(zip(self._labels[plan], values, strict=True))

    def __call__(self, keys: _dealer.DealerKeys | jax.Array, *args: Any) -> Any:
        """Generate material from ``keys`` and run both parties (one jitted program)."""
        keys = as_keys(keys)
        plan = self.plan(*args)
        with jax.enable_x64(True):
            return self._finish(plan, self._run_jit(plan, keys, tuple(args)))

    def warm(
        self, keys: _dealer.DealerKeys | jax.Array | int, *args: Any, workers: int | None = None
    ) -> None:
        """Compile both phases for ``args`` at once: the online program and every distinct
        dealer generator, in a pool of ``workers`` threads (default: one per CPU core).

        XLA compiles release the GIL, so on a first query the phases' compile times overlap
        instead of adding up (the dealer's generators are many small programs, the online
        phase one large one). Afterwards :meth:`material` and :meth:`online` find everything
        in the jit caches. ``args`` must be the arrays of the coming call (or arrays placed
        like them): compiled programs are keyed by placement as well as shape.
        """
        import concurrent.futures
        import os

        keys = as_keys(keys)
        plan = self.plan(*args)
        with jax.enable_x64(True):
            mat = jax.eval_shape(lambda k: _dealer.generate_items(plan, k), keys)

        def online() -> None:
            with jax.enable_x64(True):
                self._online_jit.lower(plan, mat, tuple(args)).compile()

        jobs = [online] + [
            functools.partial(_dealer.compile_item, item, *item_keys)
            for item, item_keys in _dealer.item_keys(plan, keys).items()
        ]
        workers = workers or len(os.sched_getaffinity(0))
        with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
            for f in [pool.submit(job) for job in jobs]:
                f.result()  # re-raises a failed compile here

    def clear_cache(self) -> None:
        """Drop this program's plans and compiled executables (every input shape).

        The next call of a shape traces and compiles again. Long runs over many shapes (an
        evaluation walking sequence buckets in order) call this when a shape will not come
        back, so that memory does not grow with the number of shapes seen. The dealer's
        per-item generators are shared between programs: :func:`clear_caches` drops those.
        """
        self._plans.clear()
        self._labels.clear()
        self._run_jit.clear_cache()
        self._online_jit.clear_cache()

    def material(self, keys: _dealer.DealerKeys | jax.Array, *args: Any) -> list[Any]:
        """The dealer phase alone: both parties' material for inputs shaped like ``args``.

        Each distinct kind of item is compiled once (:func:`dealer.generate_items`), so a deep
        model's material compiles in the time of its distinct item shapes; the items are
        bit-identical to those of ``__call__``'s single program.
        """
        keys = as_keys(keys)
        plan = self.plan(*args)
        with jax.enable_x64(True):
            return _dealer.generate_items(plan, keys)

    def online(self, material: list[Any], *args: Any) -> Any:
        """The online phase alone, consuming ``material`` from :meth:`material`."""
        plan = self.plan(*args)
        with jax.enable_x64(True):
            return self._finish(plan, self._online_jit(plan, material, tuple(args)))


def as_keys(keys: _dealer.DealerKeys | jax.Array | int) -> _dealer.DealerKeys:
    """Accept full :class:`DealerKeys`, one key (weights key derived from it) or an int seed."""
    if isinstance(keys, _dealer.DealerKeys):
        return keys
    if isinstance(keys, int):
        keys = jax.random.key(keys)
    return _dealer.DealerKeys(
        query=jax.random.fold_in(keys, 1), weights=jax.random.fold_in(keys, 0)
    )


# Programs by (fn, mode, record_openings), least recently used first. Bounded: a caller that
# builds a fresh closure per call would otherwise keep every compiled executable alive (each one
# holds code pages; a process that maps too many of them is killed by the kernel's map limit).
_PROGRAMS: collections.OrderedDict[tuple[Any, Mode, bool], Program] = collections.OrderedDict()
PROGRAM_CACHE_SIZE = 64


def compile(  # noqa: A001 - mirrors jax.jit's role
    fn: Callable[..., Any], *, mode: str | Mode = Mode.SIMULATE, record_openings: bool = False
) -> Program:
    """A cached :class:`Program` for ``fn`` (same ``fn`` and mode -> same program).

    The cache keeps the :data:`PROGRAM_CACHE_SIZE` most recently used programs;
    :func:`clear_caches` empties it.
    """
    key = (fn, Mode(mode), record_openings)
    if key in _PROGRAMS:
        _PROGRAMS.move_to_end(key)
    else:
        _PROGRAMS[key] = Program(fn, mode=mode, record_openings=record_openings)
        while len(_PROGRAMS) > PROGRAM_CACHE_SIZE:
            _PROGRAMS.popitem(last=False)
    return _PROGRAMS[key]


def clear_caches() -> None:
    """Drop every cached program and compiled dealer generator, and JAX's own caches.

    Frees their compiled executables; the next call compiles again. Long-lived processes that
    run many differently shaped protocols (a test suite, a benchmark sweep) call this between
    phases.
    """
    _PROGRAMS.clear()
    _dealer.clear_caches()
    jax.clear_caches()


def run(
    fn: Callable[..., Any],
    *args: Any,
    key: _dealer.DealerKeys | jax.Array | int,
    mode: str | Mode = Mode.SIMULATE,
) -> Any:
    """Run the per-party function ``fn(*args, mat)`` on shared inputs; see :class:`Program`."""
    return compile(fn, mode=mode)(key, *args)


def cost(fn: Callable[..., Any], *args: Any) -> Cost:
    """Trace ``fn(*args, mat)`` (no run) and return its :class:`Cost`.

    ``args`` may be :class:`Secret` values, arrays or ``jax.ShapeDtypeStruct`` trees with a
    leading party axis of size 2.
    """
    return Program(fn).cost(*args)
