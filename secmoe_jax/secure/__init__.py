"""Secure models: Flax checkpoints evaluated under two-party computation."""

from ._eval import eval_batches as eval_batches
from ._eval import evaluate as evaluate
from ._model import SecureModel as SecureModel
from ._model import SecureOptions as SecureOptions
from ._model import bucket_length as bucket_length
from ._model import encoder_layer as encoder_layer
from ._model import forward as forward
from ._model import prepare_params as prepare_params
from ._model import setup_fn as setup_fn
