"""Per-party protocols over additive shares (see :mod:`secmoe_jax.runtime`)."""

from ._arith import TRUNC_MODES as TRUNC_MODES
from ._arith import MaskedWeight as MaskedWeight
from ._arith import add as add
from ._arith import add_public as add_public
from ._arith import add_public_ring as add_public_ring
from ._arith import dot_public as dot_public
from ._arith import einsum as einsum
from ._arith import einsum_shape as einsum_shape
from ._arith import einsum_weight as einsum_weight
from ._arith import is_party0 as is_party0
from ._arith import mask_weight as mask_weight
from ._arith import matmul as matmul
from ._arith import matmul_weight as matmul_weight
from ._arith import mul as mul
from ._arith import mul_int as mul_int
from ._arith import mul_public as mul_public
from ._arith import neg as neg
from ._arith import square as square
from ._arith import sub as sub
from ._arith import trunc as trunc
from ._arith import trunc_as as trunc_as
from ._arith import trunc_local as trunc_local
