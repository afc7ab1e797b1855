"""Benchmarks behind ``secmoe bench``: records with exact cost, seconds and error."""

from ._harness import measure as measure
from ._harness import share_inputs as share_inputs
from ._ops import OPS as OPS
from ._ops import op as op
