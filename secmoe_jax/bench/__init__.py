"""Benchmarks behind ``secmoe bench``: records with exact cost, seconds and error."""

from . import _compare_ops as _compare_ops  # registers compare, relu
from . import _gelu_ops as _gelu_ops  # registers gelu, silu
from . import _moe_bench as _moe_bench  # registers moe
from . import _nonlinear_ops as _nonlinear_ops  # layernorm, softmax, reciprocal, rsqrt, exp
from ._harness import measure as measure
from ._harness import share_inputs as share_inputs
from ._ops import OPS as OPS
from ._ops import op as op
