"""Secure MoE layer: three strategies vs the plaintext reference, capacity drops, cost, security.

Float reference: ``secmoe_jax.training._moe.moe_reference`` (the Switch/GShard semantics the
layer must reproduce) evaluated with the SAME activation approximation as the protocol.

Tolerance. Inputs are rounded to ``2^-17``; every product is exact in the ring and truncated
once (one unit, ``2^-16``, per truncation), so the expert FFN differs from the float FFN by a
few units times the fan-in (``D``, ``F`` terms of size ``|x| |w|``), about ``1e-4`` here, plus
the activation protocol's own error against its float table (a few units). The gates come from
the secure softmax: "exact" is the limit-form exponential with Goldschmidt division, within
``7e-3`` of the exact softmax (documented by its protocol), "2quad" within a few units of the
float 2Quad; a gate error ``dg`` moves the output by ``dg |FFN_e(x)|``. So the stated bound is
``ATOL + GATE_ERR * max |FFN_e(x)|`` with ``ATOL = 2e-3`` and ``GATE_ERR`` = 1e-2 (exact) or
2e-3 (2quad). The inputs are drawn so that the top-2 probabilities are separated by more than
0.05, so the secure routing equals the float routing (asserted through the outputs).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax.protocols import _moe
from secmoe_jax.protocols._compare import msb_cost
from secmoe_jax.testing import TraceCounter, assert_openings_masked, run_with_openings
from secmoe_jax.training._config import EncoderConfig, MoEConfig
from secmoe_jax.training._moe import moe_reference

T, D, F, E = 8, 6, 12, 4
ATOL = 2e-3
GATE_ERR = {"exact": 1e-2, "2quad": 2e-3}
KEYS = sm.runtime.as_keys(7)


def _params(seed, *, e=E, d=D, f=F, router_scale=1.5):
    rng = np.random.default_rng(seed)
    return {
        "router": rng.normal(scale=router_scale, size=(d, e)),
        "w_in": rng.normal(scale=0.5, size=(e, d, f)),
        "b_in": rng.normal(scale=0.1, size=(e, f)),
        "w_up": rng.normal(scale=0.5, size=(e, d, f)),
        "b_up": rng.normal(scale=0.1, size=(e, f)),
        "w_out": rng.normal(scale=0.3, size=(e, f, d)),
        "b_out": rng.normal(scale=0.1, size=(e, d)),
    }


PARAMS = _params(1)


def _encoder_cfg(cfg: _moe.MoELayerConfig, d=D, f=F) -> EncoderConfig:
    moe = MoEConfig(
        experts=cfg.experts,
        top_k=cfg.top_k,
        capacity_factor=cfg.capacity_factor,
        ffn_kind=cfg.ffn,
        router=cfg.router,
    )
    return EncoderConfig(hidden=d, heads=1, ffn=f, gelu=cfg.gelu, silu="six", moe=moe)


def _reference(x, params, cfg, mask=None):
    names = ("router", "w_in", "b_in", "w_out", "b_out")
    if cfg.ffn != "gelu":
        names += ("w_up", "b_up")
    p = {n: jnp.asarray(params[n], jnp.float32) for n in names}
    m = None if mask is None else jnp.asarray(mask)[None]
    y, r = moe_reference(jnp.asarray(x[None], jnp.float32), p, _encoder_cfg(cfg), m)
    return np.asarray(y[0], np.float64), r


def _ffn_scale(x, params):
    """Bound on |FFN_e(x_t)| over experts and tokens (for the gate part of the tolerance)."""
    h = np.einsum("td,edf->tef", x, params["w_in"]) + params["b_in"][None]
    u = np.einsum("td,edf->tef", x, params["w_up"]) + params["b_up"][None]
    g = np.abs(h) * np.maximum(1, np.abs(u))
    return float(np.max(np.einsum("tef,efd->ted", g, np.abs(params["w_out"]))) + 1)


def _tokens(seed, params, cfg, *, t=T, margin=0.05):
    """Tokens whose float routing has every top-2 probability gap above ``margin``."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        x = rng.normal(size=(t, D))
        _, r = _reference(x, params, cfg)
        p = np.sort(np.asarray(r.probs[0]), axis=-1)[:, ::-1]
        if np.all(p[:, 0] - p[:, 1] > margin) and np.all(p[:, 1] - p[:, 2] > margin):
            return x
    raise AssertionError("no well-separated routing found")


def _setup(p, mat):
    return _moe.setup_moe(p, mat, mask_ids=100)


def _share_params(params, seed, keys):
    shares = {
        n: sm.share(v, jax.random.key(seed + i), owner=sm.SERVER)
        for i, (n, v) in enumerate(params.items())
    }
    return sm.run(_setup, shares, key=keys)


@pytest.fixture(scope="module")
def weights():
    return _share_params(PARAMS, 0, KEYS)


def _query_keys(seed, keys=KEYS):
    """A fresh query key with the deployment's weights key (the one used at setup)."""
    return sm.DealerKeys(query=jax.random.key(seed), weights=keys.weights)


def _plain(w):
    return w.replace(w_up=None, b_up=None)


# --------------------------------------------------------------------------------------------
# The three strategies on ONE secret routing, against the reference and each other.
# --------------------------------------------------------------------------------------------
CFG2 = _moe.MoELayerConfig(
    experts=E, top_k=2, capacity_factor=0.5, ffn="geglu", router="2quad", gelu="quad"
)


def _bodies(x, w, oh, wt, mat):
    ys = [
        _moe.moe_experts(x.data, w, oh, wt.data, mat, cfg=CFG2.replace(strategy=s))
        for s in _moe.STRATEGIES
    ]
    return sm.Secret(jnp.stack(ys))


def _run_bodies(x, r, weights, seed):
    """The three bodies on the reference's routing (one-hots and gates shared as secrets)."""
    idx, gates = np.asarray(r.expert_index[0]), np.asarray(r.gates[0])
    oh = np.zeros((2, T, E))
    for j in range(2):
        oh[j, np.arange(T), idx[:, j]] = 1
    ohs = sm.share_ring(oh.astype(np.uint64), jax.random.key(seed))
    wts = sm.share(oh * gates.T[:, :, None], jax.random.key(seed + 1))
    xs = sm.share(x, jax.random.key(seed + 2))
    return sm.reveal(sm.run(_bodies, xs, weights, ohs, wts, key=_query_keys(seed + 3)))


def test_strategies_agree_with_reference_top2_gated_with_drops(weights):
    x = _tokens(3, PARAMS, CFG2)
    ref, r = _reference(x, PARAMS, CFG2)
    kept = np.asarray(r.kept[0])
    assert CFG2.capacity(T) == 2 and not kept.all()  # the capacity drops some choices
    ys = _run_bodies(x, r, weights, 10)
    for y in ys:  # routing given: only the FFN's fixed-point error remains
        np.testing.assert_allclose(y, ref, atol=ATOL)
    np.testing.assert_allclose(ys[0], ys[1], atol=ATOL)
    np.testing.assert_allclose(ys[1], ys[2], atol=ATOL)
    dropped_both = ~kept.any(axis=-1)
    np.testing.assert_array_equal(ys[:, dropped_both], 0.0)  # the residual carries them


def test_capacity_drops_follow_token_order_crafted_router(weights):
    """A router sending every token to experts 0 then 1 (T > C): only the first C stay."""
    params = dict(PARAMS)
    router = np.zeros((D, E))
    router[0, 0], router[0, 1] = 4.0, 2.0  # x_0 >= 1 below: expert 0 first, expert 1 second
    params["router"] = router
    x = np.random.default_rng(9).normal(size=(T, D))
    x[:, 0] = 1.0 + np.arange(T) / 8
    ref, r = _reference(x, params, CFG2)
    assert np.asarray(r.expert_index[0]).tolist() == [[0, 1]] * T
    c = CFG2.capacity(T)
    assert np.asarray(r.kept[0]).tolist() == [[True, True]] * c + [[False, False]] * (T - c)
    ys = _run_bodies(x, r, weights, 20)  # same program as above: no new compile
    for y in ys:
        np.testing.assert_allclose(y, ref, atol=ATOL)
        np.testing.assert_array_equal(y[c:], 0.0)


# --------------------------------------------------------------------------------------------
# The full layer (router fused): accuracy, transcript structure, masked openings, one trace.
# --------------------------------------------------------------------------------------------
CFG1 = _moe.MoELayerConfig(experts=E, top_k=1, capacity_factor=1.0, strategy="stc")
_LAYER = TraceCounter(lambda x, w, mat: sm.Secret(_moe.moe_layer(x.data, w, mat, cfg=CFG1)))


def test_layer_stc_top1_secmoe6_transcript_and_masking(weights):
    w = _plain(weights)
    x1 = _tokens(4, PARAMS, CFG1)
    ref1, r1 = _reference(x1, PARAMS, CFG1)
    # a second input with a different routing (another seed), same shapes
    x2 = _tokens(8, PARAMS, CFG1)
    ref2, r2 = _reference(x2, PARAMS, CFG1)
    assert not np.array_equal(np.asarray(r1.expert_index), np.asarray(r2.expert_index))
    out1, open1 = run_with_openings(_LAYER, sm.share(x1, jax.random.key(1)), w, key=_query_keys(21))
    traces = _LAYER.count
    out2, open2 = run_with_openings(_LAYER, sm.share(x2, jax.random.key(2)), w, key=_query_keys(22))
    assert _LAYER.count == traces  # second call: no retrace
    for out, ref, x in ((out1, ref1, x1), (out2, ref2, x2)):
        tol = ATOL + GATE_ERR["exact"] * _ffn_scale(x, PARAMS)
        np.testing.assert_allclose(sm.reveal(out), ref, atol=tol)
    # what a party sees has the same structure whatever the routing
    assert [(lbl, v.shape) for lbl, v in open1] == [(lbl, v.shape) for lbl, v in open2]
    labels = [lbl for lbl, _ in open1]
    assert labels.count("moe_x") == 1 and "moe_select" in labels and "moe_select_out" in labels
    # every opened word changes with the dealer key (masked by fresh randomness)
    checked = assert_openings_masked(
        _LAYER,
        sm.share(x1, jax.random.key(1)),
        w,
        keys=(_query_keys(31), _query_keys(32)),
        min_openings=20,
    )
    assert len(checked) == len(open1)


# --------------------------------------------------------------------------------------------
# Cost: closed forms per strategy, the scaling target, clear errors.
# --------------------------------------------------------------------------------------------
def _sds(*shape):
    return jax.ShapeDtypeStruct((2, *shape), np.uint64)


def _abstract_weights(d, f, e, gated=False):
    def mw(mid, *shape):
        return _moe.MaskedWeight(f=_sds(*shape), b=_sds(*shape), mask_id=mid)

    w = _moe.MoEWeights(
        router=mw(1, d, e),
        w_in=mw(2, e, d, f),
        w_out=mw(3, e, f, d),
        b_in=mw(4, e, f),
        b_out=mw(5, e, d),
    )
    return w.replace(w_up=mw(6, e, d, f), b_up=mw(7, e, f)) if gated else w


def _body_cost_formula(strategy, t, d, f, e, k, c, gated):
    """(rounds, bytes per party) of ``moe_experts`` with the "quad" GeLU (2 rounds, 16 B/elem)."""
    p, g, n = 1 + gated, int(gated), k * t
    pb = max(6, (k * t + c + 1).bit_length() + 1)
    cap_r, cap_b = msb_cost(k * t * e, bits=pb, extras=2) if c < t else (0, 0)
    if strategy == "all":
        m = t * e * f
        rounds = 7 + cap_r + 2 * g
        nbytes = 8 * t * d + cap_b + 8 * m * p + 16 * m + 24 * m * g + 8 * m
        nbytes += 8 * (t * e + t * e * d) + 8 * t * d
    elif strategy == "stc":
        rounds = 7 + cap_r + 2 * g
        nbytes = 8 * t * d + cap_b + 8 * n * e + 8 * n * f * p + 16 * n * f + 24 * n * f * g
        nbytes += 8 * n * (f + e) + 8 * t * d
    else:
        s = e * c
        cmp_r, cmp_b = msb_cost(c * k * t * e, bits=pb, extras=2)
        rounds = 9 + cmp_r + 2 * g
        nbytes = 8 * t * d + cmp_b + 8 * t * e * c + 8 * s * d + 8 * s * f * p + 16 * s * f
        nbytes += 24 * s * f * g + 8 * s * f + 8 * (t * e * c + s * d) + 8 * t * d
    return rounds, nbytes


@pytest.mark.parametrize("strategy", _moe.STRATEGIES)
@pytest.mark.parametrize("k,cf,gated", [(1, 1.0, False), (2, 0.5, True), (1, None, True)])
def test_body_cost_closed_form(strategy, k, cf, gated):
    t, d, f, e = 16, 8, 24, 5
    cfg = _moe.MoELayerConfig(
        experts=e,
        top_k=k,
        capacity_factor=cf,
        strategy=strategy,
        gelu="quad",
        ffn="geglu" if gated else "gelu",
    )

    def fn(x, w, oh, wt, mat):
        return _moe.moe_experts(x, w, oh, wt, mat, cfg=cfg)

    c = sm.cost(fn, _sds(t, d), _abstract_weights(d, f, e, gated), _sds(k, t, e), _sds(k, t, e))
    rounds, nbytes = _body_cost_formula(strategy, t, d, f, e, k, cfg.capacity(t), gated)
    assert (c.rounds, c.bytes_sent) == (rounds, (nbytes, nbytes))


def test_layer_cost_is_router_plus_body():
    """moe_layer = one opening of x + top-k + exact gates + the body (which reuses x's mask)."""
    from secmoe_jax.protocols import _topk

    t, d, f, e = 16, 8, 24, 5
    cfg = _moe.MoELayerConfig(experts=e, top_k=1, capacity_factor=1.0, gelu="quad")
    w = _abstract_weights(d, f, e)
    layer = sm.cost(lambda x, w, mat: _moe.moe_layer(x, w, mat, cfg=cfg), _sds(t, d), w)
    body = sm.cost(
        lambda x, w, oh, wt, mat: _moe.moe_experts(x, w, oh, wt, mat, cfg=cfg),
        _sds(t, d),
        w,
        _sds(1, t, e),
        _sds(1, t, e),
    )
    topk = sm.cost(lambda s, mat: _topk.top_k_onehot(s, mat, k=1), _sds(t, e))
    gates = sm.cost(
        lambda lg, top, oh, mat: _topk.exact_gate_weights(lg, top, oh, mat),
        _sds(t, e),
        _sds(1, t),
        _sds(1, t, e),
    )
    assert layer.rounds == body.rounds + topk.rounds + gates.rounds
    assert layer.bytes_sent[0] == body.bytes_sent[0] + topk.bytes_sent[0] + gates.bytes_sent[0]


def test_token_chunk_pieces_add_up_to_the_layer():
    """Chunked execution's pieces (bench ``ChunkedLayer``): moe_route + moe_capacity on all T
    tokens, then moe_experts(kept=True) per token chunk. Their bytes are the fused layer's plus
    one more opening of x (``8 T D``): every body term is linear in T; the capacity is the
    comparison batch on ``k T E`` elements, and a kept body applies none."""
    t, d, f, e, k = 16, 8, 24, 5, 2
    w = _abstract_weights(d, f, e)
    cfg = _moe.MoELayerConfig(experts=e, top_k=k, capacity_factor=0.5, gelu="quad")
    route = sm.cost(lambda x, w, mat: _moe.moe_route(x, w, mat, cfg=cfg), _sds(t, d), w)
    cap = sm.cost(
        lambda oh, wt, mat: _moe.moe_capacity(oh, wt, mat, cfg=cfg), _sds(k, t, e), _sds(k, t, e)
    )
    pb = max(6, (k * t + cfg.capacity(t) + 1).bit_length() + 1)
    assert (cap.rounds, cap.bytes_sent[0]) == msb_cost(k * t * e, bits=pb, extras=2)
    for strategy in ("stc", "all"):
        scfg = cfg.replace(strategy=strategy)
        total = route.bytes_sent[0] + cap.bytes_sent[0]
        for n in (10, 6):  # two chunks of different sizes
            body = sm.cost(
                lambda x, w, oh, wt, mat, c=scfg: _moe.moe_experts(
                    x, w, oh, wt, mat, cfg=c, kept=True
                ),
                _sds(n, d),
                w,
                _sds(k, n, e),
                _sds(k, n, e),
            )
            formula = _body_cost_formula(strategy, n, d, f, e, k, n, False)  # no capacity
            assert (body.rounds, body.bytes_sent[0]) == formula
            total += body.bytes_sent[0]
        # = the unchunked body (with capacity) after the router, i.e. the fused layer + 8 T D
        # (test_layer_cost_is_router_plus_body: the layer's body reuses the router's x)
        full = _body_cost_formula(strategy, t, d, f, e, k, cfg.capacity(t), False)[1]
        assert total == route.bytes_sent[0] + full
    with pytest.raises(ValueError, match="kept=True"):
        sm.cost(
            lambda x, w, oh, wt, mat: _moe.moe_experts(
                x, w, oh, wt, mat, cfg=cfg.replace(strategy="dispatch"), kept=True
            ),
            _sds(t, d),
            w,
            _sds(k, t, e),
            _sds(k, t, e),
        )


@pytest.mark.parametrize("strategy", ["stc", "dispatch"])
def test_online_bytes_flat_in_experts(strategy):
    """Target: at T=128, d=256, f=1024, k=1, online bytes at E=128 <= 1.25x those at E=8.

    With ``capacity_factor = 1`` the slots ``E C = T`` are the same for every E (with 1.25 the
    ceiling gives ``E C`` = 160 at E = 8 but 256 at E = 128: dispatch then grows 1.6x).
    """
    t, d, f = 128, 256, 1024
    out = {}
    for e in (8, 128):
        cfg = _moe.MoELayerConfig(experts=e, capacity_factor=1.0, strategy=strategy)
        c = sm.cost(
            lambda x, w, mat, cfg=cfg: _moe.moe_layer(x, w, mat, cfg=cfg),
            _sds(t, d),
            _abstract_weights(d, f, e),
        )
        out[e] = c.online_bytes
    assert out[128] <= 1.25 * out[8], out


def test_errors_are_clear(weights):
    with pytest.raises(ValueError, match="strategy"):
        _moe.MoELayerConfig(experts=4, strategy="bogus")
    with pytest.raises(ValueError, match="top_k"):
        _moe.MoELayerConfig(experts=4, top_k=3)
    cfg = _moe.MoELayerConfig(experts=E)
    with pytest.raises(ValueError, match="D=5"):
        sm.cost(lambda x, w, mat: _moe.moe_layer(x, w, mat, cfg=cfg), _sds(T, 5), weights)
    with pytest.raises(ValueError, match="E=4 experts"):
        sm.cost(
            lambda x, w, mat: _moe.moe_layer(x, w, mat, cfg=cfg.replace(experts=3)),
            _sds(T, D),
            weights,
        )
    with pytest.raises(ValueError, match="missing weights"):
        sm.cost(lambda p, mat: _moe.setup_moe(p, mat, mask_ids=1), {"router": _sds(D, E)})
