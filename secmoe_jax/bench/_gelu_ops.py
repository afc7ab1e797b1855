"""``secmoe bench ops`` workloads for GeLU / SiLU: every variant, both piecewise strategies.

GeLU on (128, 3072) (a BERT-base FFN activation; ``small``: (16, 64)), inputs N(0, 2^2) as in
the peer measurements. ``max_abs_err`` is against EXACT GeLU/SiLU (float64), so it includes the
approximation's own error; the record's ``approx_err`` is against the approximation's float
function (the protocol's own error). Complexity-table entries are registered here too.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from .. import comm
from .._report import complexity_entry
from ..approx._exact import gelu_exact, silu_exact
from ..approx._gelu import gelu as float_gelu
from ..approx._gelu import silu as float_silu
from ..protocols._gelu import gelu, silu
from ..runtime import Secret, reveal, run
from ._harness import measure, share_inputs
from ._ops import Record, op

N = 128 * 3072
#: ``variant`` label -> (approximation variant, strategy).
GELU_CASES = {
    "secmoe6/stc": ("secmoe6", "stc"),
    "secmoe6/cts": ("secmoe6", "cts"),
    "puma/stc": ("puma", "stc"),
    "puma/cts": ("puma", "cts"),
    "quad": ("quad", "stc"),
    "secformer": ("secformer", "stc"),
}


def _f64(fn, x):
    with jax.enable_x64(True):
        return np.asarray(fn(jax.numpy.asarray(x, dtype=jax.numpy.float64)))


def _records(name, cases, exact, approx, repeats, small):
    shape = (16, 64) if small else (128, 3072)
    x = np.random.default_rng(7).normal(scale=2.0, size=shape)
    (xs,) = share_inputs([x], [comm.CLIENT])
    ref = _f64(exact, x)
    for label, (variant, strategy) in cases.items():

        def fn(a, mat, variant=variant, strategy=strategy):
            f = gelu if name == "gelu" else silu
            return Secret(f(a.data, mat, variant=variant, strategy=strategy), a.frac_bits)

        rec = measure(name, label, fn, [xs], expected=ref, shape=shape, repeats=repeats)
        got = reveal(run(fn, xs, key=12345))
        x_enc = np.round(x * 2.0**16) / 2.0**16  # the table of the encoded input
        ref_approx = _f64(lambda v, variant=variant: approx(v, variant), x_enc)
        rec["approx_err"] = float(np.max(np.abs(got - ref_approx)))
        yield rec


@op("gelu")
def _gelu(repeats: int, small: bool) -> Iterator[Record]:
    yield from _records("gelu", GELU_CASES, gelu_exact, float_gelu, repeats, small)


@op("silu")
def _silu(repeats: int, small: bool) -> Iterator[Record]:
    cases = {"six/stc": ("six", "stc"), "six/cts": ("six", "cts")}
    yield from _records("silu", cases, silu_exact, float_silu, repeats, small)


def _entry(variant, strategy):
    def fn(x, mat):
        return gelu(x, mat, variant=variant, strategy=strategy)

    return fn


for _label, (_v, _s) in GELU_CASES.items():
    complexity_entry("gelu", _label, ((128, 3072),), N)(_entry(_v, _s))
