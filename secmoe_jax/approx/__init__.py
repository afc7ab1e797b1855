"""Nonlinearity approximations shared by the secure protocols and the training code.

Every approximation is data (breakpoints, coefficient tables, periods, iteration counts) plus
a float reference plus an accuracy contract. The protocols evaluate exactly these tables in
MPC; the Flax students are trained with exactly these float functions.
"""

from ._common import FRAC_BITS as FRAC_BITS
from ._exact import erf_exact as erf_exact
from ._exact import gelu_exact as gelu_exact
from ._exact import silu_exact as silu_exact
from ._fourier import GELU_SECFORMER as GELU_SECFORMER
from ._fourier import SECFORMER_PUBLISHED as SECFORMER_PUBLISHED
from ._fourier import FourierErfGelu as FourierErfGelu
from ._gelu import GELU_VARIANTS as GELU_VARIANTS
from ._gelu import SILU_VARIANTS as SILU_VARIANTS
from ._gelu import gelu as gelu
from ._gelu import silu as silu
from ._iterative import LAYERNORM_RSQRT_BOUNDS as LAYERNORM_RSQRT_BOUNDS
from ._iterative import LAYERNORM_RSQRT_ITERS as LAYERNORM_RSQRT_ITERS
from ._iterative import Bound as Bound
from ._iterative import goldschmidt_domain as goldschmidt_domain
from ._iterative import goldschmidt_iters as goldschmidt_iters
from ._iterative import goldschmidt_reciprocal as goldschmidt_reciprocal
from ._iterative import goldschmidt_rsqrt as goldschmidt_rsqrt
from ._iterative import newton_reciprocal as newton_reciprocal
from ._iterative import newton_rsqrt as newton_rsqrt
from ._layernorm import LAYERNORM_RSQRT_VARIANTS as LAYERNORM_RSQRT_VARIANTS
from ._layernorm import layernorm as layernorm
from ._piecewise import PiecewisePolynomial as PiecewisePolynomial
from ._softmax import SOFTMAX_VARIANTS as SOFTMAX_VARIANTS
from ._softmax import exp_limit as exp_limit
from ._softmax import softmax as softmax
from ._softmax import softmax_limit_exp as softmax_limit_exp
from ._tables import GELU_PUMA as GELU_PUMA
from ._tables import GELU_QUAD as GELU_QUAD
from ._tables import GELU_SECMOE6 as GELU_SECMOE6
from ._tables import PIECEWISE_NAMES as PIECEWISE_NAMES
from ._tables import SILU_SIX as SILU_SIX
from ._tables import piecewise as piecewise
