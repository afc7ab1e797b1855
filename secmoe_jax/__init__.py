"""secmoe-jax: two-party private inference of Transformer and MoE models in JAX.

The user-facing entry points: :func:`share` a float array into a :class:`Secret`, :func:`run` a
per-party function on shared inputs in a chosen execution mode, :func:`reveal` the result, and
:func:`cost` for the exact online/offline cost of a computation without running it.
"""

from . import comm as comm
from . import dealer as dealer
from . import kernels as kernels
from . import protocols as protocols
from .comm import CLIENT as CLIENT
from .comm import LAN as LAN
from .comm import SERVER as SERVER
from .comm import WAN as WAN
from .dealer import Dealer as Dealer
from .dealer import DealerKeys as DealerKeys
from .runtime import Cost as Cost
from .runtime import Mode as Mode
from .runtime import Program as Program
from .runtime import Secret as Secret
from .runtime import clear_caches as clear_caches
from .runtime import compile as compile  # noqa: A004
from .runtime import cost as cost
from .runtime import reveal as reveal
from .runtime import reveal_ring as reveal_ring
from .runtime import run as run
from .runtime import share as share
from .runtime import share_ring as share_ring

__version__ = "0.1.0"
