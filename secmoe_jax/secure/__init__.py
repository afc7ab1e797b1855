"""Secure models: Flax checkpoints evaluated under two-party computation."""

from ._model import SecureModel as SecureModel
from ._model import SecureOptions as SecureOptions
from ._model import forward as forward
from ._model import prepare_params as prepare_params
from ._model import setup_fn as setup_fn
