"""The secure encoder: a Flax model's logits under MPC match the plaintext model's."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

from secmoe_jax.secure import SecureModel, SecureOptions
from secmoe_jax.training import Encoder, tiny
from secmoe_jax.training._checkpoint import params_to_flat


@pytest.fixture(scope="module")
def tiny_model():
    cfg = dataclasses.replace(
        tiny(),
        vocab_size=40,
        hidden=16,
        heads=2,
        ffn=32,
        layers=1,
        gelu="secmoe6",
        softmax="2quad",
    )
    return cfg, Encoder(cfg, rngs=nnx.Rngs(0))


def test_private_logits_match_plaintext_and_do_not_retrace(tiny_model):
    cfg, model = tiny_model
    secure = SecureModel(cfg, params_to_flat(model))
    rng = np.random.default_rng(0)
    mask = np.ones((2, 6), np.int32)
    mask[1, 4:] = 0  # padding: public lengths
    for _ in range(2):  # a second query of the same shape reuses the compiled program
        ids = rng.integers(1, cfg.vocab_size, size=(2, 6))
        got = secure.logits(ids, mask)
        ref = np.asarray(model(ids, mask).logits)
        # a dozen fixed-point ops deep: errors of a few units of 2^-16 per op, amplified by
        # LayerNorm; 1e-3 is ~65 units
        np.testing.assert_allclose(got, ref, atol=1e-3)
    assert secure.program._online_jit._cache_size() == 1
    timing = secure.last_timing
    assert set(timing) == {"compile_seconds", "dealer_seconds", "online_seconds"}
    assert timing["compile_seconds"] == 0.0  # compiled on the first query only
    cost = secure.cost(2, 6)
    assert cost.rounds > 0 and cost.online_bytes > 0
    # the setup opens every dense weight once
    assert secure.setup_cost.rounds == 1 + cfg.layers  # top level, then one per layer


def test_bad_inputs_are_rejected(tiny_model):
    cfg, model = tiny_model
    secure = SecureModel(cfg, params_to_flat(model), opts=SecureOptions(embedding="public"))
    with pytest.raises(ValueError, match="token ids"):
        secure.logits(np.array([[1, cfg.vocab_size]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        secure.logits(np.array([1, 2]), np.ones(2))
    with pytest.raises(ValueError, match="moe_strategy"):
        SecureOptions(moe_strategy="nope")


@pytest.mark.parametrize("strategy", ["dispatch"])
def test_private_moe_model_matches_plaintext(strategy):
    from secmoe_jax.training import MoEConfig

    cfg = dataclasses.replace(
        tiny(),
        vocab_size=30,
        hidden=8,
        heads=2,
        ffn=16,
        layers=1,
        gelu="secmoe6",
        softmax="2quad",
        moe=MoEConfig(experts=3, top_k=1, capacity_factor=2.0),
    )
    model = Encoder(cfg, rngs=nnx.Rngs(1))
    secure = SecureModel(cfg, params_to_flat(model), opts=SecureOptions(moe_strategy=strategy))
    ids = np.random.default_rng(2).integers(1, cfg.vocab_size, size=(1, 5))
    mask = np.ones((1, 5), np.int32)
    got = secure.logits(ids, mask)
    ref = np.asarray(model(ids, mask).logits)
    # the router's limit-form exp adds up to ~5e-3 to the gates (see protocols._topk)
    np.testing.assert_allclose(got, ref, atol=2e-2)
