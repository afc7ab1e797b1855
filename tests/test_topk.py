"""Secure top-k routing: one-hots vs numpy argmax (ties -> lowest index), gates, cost, masking.

One program computes everything checked here (top-2 one-hots and values on exact-tie scores,
2quad scores, the exact and 2quad gate weights), so the file compiles once.

Tolerances: one-hots and chosen values are exact (comparisons are exact; scores are not
truncated). Gates: the exact variant uses the limit exponential (n = 9) and Goldschmidt
division: within 1e-2 of the float gates (absolute); 2quad's softmax protocol is within a few
units of its float 2Quad, and the renormalisation's reciprocal within ``2^-12`` relative: 2e-3.
"""

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax import approx
from secmoe_jax.protocols import _softmax, _topk
from secmoe_jax.protocols._compare import msb_cost
from secmoe_jax.testing import TraceCounter, assert_openings_masked

T, E = 9, 5
F2 = 2**32  # scores are 2f-bit logits


def _ring2f(x):
    return np.round(np.asarray(x) * F2).astype(np.int64).view(np.uint64)


def _logits():
    """Quarter-integer logits with planted exact ties, including ties for the second place."""
    rng = np.random.default_rng(0)
    lg = rng.integers(-8, 9, size=(T, E)) / 4.0
    lg[0] = [1.0, 1.0, 1.0, 0.0, -1.0]  # three-way tie for first
    lg[1] = [0.5, 2.0, 0.5, 0.5, 2.0]  # tie for first (1, 4), then second is 4
    lg[2] = [3.0, 1.0, -1.0, 1.0, 1.0]  # tie for second (1, 3, 4) -> 1
    lg[3] = 0.0  # all equal
    return lg


def _routing(lg2f, mat):
    oh, top = _topk.top_k_onehot(lg2f, mat, k=2, return_values=True)
    exact = _topk.exact_gate_weights(lg2f, top, oh, mat)
    exact1 = _topk.exact_gate_weights(lg2f, top[:1], oh[:1], mat)
    # 2quad: the scores |l + c| and the gates from the softmax protocol
    sq = _topk.router_scores(lg2f, mat, variant="2quad")
    ohq = _topk.top_k_onehot(sq, mat, k=2)
    probs = _softmax.softmax(sm.protocols.trunc(lg2f, mat), mat, variant="2quad")
    quad = _topk.gate_weights(ohq, probs, mat)
    return oh, top, exact, exact1, ohq, quad


_ROUTING = TraceCounter(_routing)


def _float_gates(probs, idx, k):
    g = np.take_along_axis(probs, idx[:, :k], axis=-1)
    return g / g.sum(-1, keepdims=True) if k == 2 else g


def _dense(idx, gates):
    out = np.zeros((idx.shape[1], T, E))
    for j in range(idx.shape[1]):
        out[j, np.arange(T), idx[:, j]] = gates[:, j]
    return out


def _argsort_stable(p):
    """Top-2 indices like the reference: argmax (first index), then argmax without it."""
    first = np.argmax(p, axis=-1)
    q = p.copy()
    q[np.arange(len(p)), first] = -np.inf
    return np.stack([first, np.argmax(q, axis=-1)], axis=-1)


@pytest.fixture(scope="module")
def outputs():
    lg = _logits()
    shares = sm.share_ring(_ring2f(lg), jax.random.key(1))
    out = sm.run(_ROUTING, shares, key=3)
    return lg, out


def test_top2_matches_numpy_argmax_with_ties(outputs):
    lg, (oh, top, *_) = outputs
    idx = _argsort_stable(lg)
    assert idx[0].tolist() == [0, 1] and idx[1].tolist() == [1, 4] and idx[2].tolist() == [0, 1]
    eye = np.eye(E)
    got = sm.reveal_ring(oh)
    np.testing.assert_array_equal(got[0], eye[idx[:, 0]])  # k = 1 is the first row
    np.testing.assert_array_equal(got[1], eye[idx[:, 1]])
    vals = sm.reveal_ring(top).view(np.int64) / F2
    np.testing.assert_array_equal(vals, np.take_along_axis(lg, idx, axis=-1).T)


def test_exact_gates_match_switch_and_renormalised(outputs):
    lg, (oh, _, exact, exact1, *_) = outputs
    probs = np.asarray(approx.softmax(lg, "exact"), np.float64)
    idx = _argsort_stable(probs)
    np.testing.assert_allclose(
        sm.reveal(exact), _dense(idx, _float_gates(probs, idx, 2)), atol=1e-2
    )
    np.testing.assert_allclose(
        sm.reveal(exact1), _dense(idx[:, :1], _float_gates(probs, idx, 1)), atol=1e-2
    )


def test_2quad_choice_follows_probabilities_and_gates(outputs):
    lg, (*_, ohq, quad) = outputs
    probs = np.asarray(approx.softmax(lg, "2quad"), np.float64)
    idx = _argsort_stable(probs)  # (l + 5)^2: ties of |l + 5| are exact ties of p
    np.testing.assert_array_equal(sm.reveal_ring(ohq)[0], np.eye(E)[idx[:, 0]])
    np.testing.assert_array_equal(sm.reveal_ring(ohq)[1], np.eye(E)[idx[:, 1]])
    np.testing.assert_allclose(sm.reveal(quad), _dense(idx, _float_gates(probs, idx, 2)), atol=2e-3)


def test_no_retrace_and_openings_masked(outputs):
    count = _ROUTING.count
    other = sm.share_ring(_ring2f(-_logits()), jax.random.key(2))
    sm.run(_ROUTING, other, key=4)
    assert _ROUTING.count == count
    assert_openings_masked(lambda s, mat: _topk.top_k_onehot(s, mat, k=2), other, min_openings=8)


def test_top_k_cost_closed_form():
    rows, e = 128, 8
    s = jax.ShapeDtypeStruct((2, rows, e), np.uint64)
    for k in (1, 2):
        c = sm.cost(lambda x, mat, k=k: _topk.top_k_onehot(x, mat, k=k), s)
        # levels of 4, 2, 1 pairs; level L >= 1 opens rows m_L 2^(L+1) one-hot words
        per = [
            msb_cost(rows * m, extras=0 if lvl == 0 else 2 ** (lvl + 1))
            for lvl, m in enumerate((4, 2, 1))
        ]
        assert c.rounds == k * sum(r for r, _ in per)
        assert c.bytes_sent == (k * sum(b for _, b in per),) * 2


def test_errors():
    s = jax.ShapeDtypeStruct((2, 3, 4), np.uint64)
    with pytest.raises(ValueError, match="k must be 1 or 2"):
        sm.cost(lambda x, mat: _topk.top_k_onehot(x, mat, k=3), s)
    with pytest.raises(ValueError, match="variant"):
        sm.cost(lambda x, mat: _topk.router_scores(x, mat, variant="bogus"), s)
    with pytest.raises(ValueError, match=r"\[k, T, E\]"):
        sm.cost(lambda x, p, mat: _topk.gate_weights(x, p, mat), s, s)
