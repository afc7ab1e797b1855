"""Runtime: execution modes, the dealer's plan and single-use material, the user API."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax import comm, dealer
from secmoe_jax import protocols as pr


def _fn(x, y, mat):
    z = pr.mul(x.data, y.data, mat)
    return sm.Secret(pr.square(z, mat)), comm.reveal_to(z, sm.CLIENT)


def test_share_reveal_round_trip_without_global_x64():
    assert not jax.config.read("jax_enable_x64")  # the library scopes x64 itself
    x = np.array([[1.25, -3.5], [0.0, 1e6]])
    s = sm.share(x, jax.random.key(0))
    assert s.data.shape == (2, 2, 2) and s.data.dtype == jnp.uint64 and s.shape == (2, 2)
    np.testing.assert_array_equal(sm.reveal(s), x)


def test_simulate_and_two_devices_are_bit_identical():
    assert len(jax.devices()) >= 2
    rng = np.random.default_rng(0)
    x = sm.share(rng.normal(size=(3, 4)), jax.random.key(1))
    y = sm.share(rng.normal(size=(3, 4)), jax.random.key(2), owner=sm.SERVER)
    keys = sm.runtime.as_keys(5)
    a = sm.Program(_fn, mode="simulate")(keys, x, y)
    b = sm.Program(_fn, mode="devices")(keys, x, y)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    # reveal_to: the client gets the value, the server zeros
    revealed = np.asarray(a[1])
    assert np.all(revealed[0] == 0)
    with jax.enable_x64(True):
        xy = np.asarray(sm.kernels.decode(jnp.asarray(revealed[1])))
    np.testing.assert_allclose(xy, sm.reveal(x) * sm.reveal(y), atol=1e-3)


def test_devices_mode_needs_two_devices():
    with pytest.raises(RuntimeError, match="two JAX devices"):
        sm.Program(_fn, mode="devices", devices=jax.devices()[:1])


def test_reveal_to_cost_is_one_way():
    x = sm.share(np.ones(10), jax.random.key(1))
    c = sm.cost(lambda x, mat: comm.reveal_to(x.data, sm.CLIENT), x)
    assert c.rounds == 1 and c.bytes_sent == (80, 0)
    c = sm.cost(lambda x, mat: comm.open(x.data), x)
    assert c.rounds == 1 and c.bytes_sent == (80, 80)


def test_plan_records_requests_in_order_and_generates_both_parties():
    x = sm.share(np.ones((2, 3)), jax.random.key(1))
    prog = sm.Program(_fn)
    plan = prog.plan(x, x)
    assert [r.kind for r in plan.requests] == ["beaver_mul", "trunc", "beaver_square", "trunc"]
    assert plan.offline_bytes() == 8 * 6 * (3 + 3 + 2 + 3)
    mats = prog.material(1, x, x)
    assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves(mats))
    # the online phase alone, on pre-generated material, equals the fused program
    full = prog(sm.runtime.as_keys(1), x, x)
    split = prog.online(mats, x, x)
    for u, v in zip(jax.tree.leaves(full), jax.tree.leaves(split), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def test_material_is_single_use_by_construction():
    with jax.enable_x64(True):
        req = dealer.make_request("beaver_mul", {"shape": (3,)})
        plan = dealer.Plan((req,))
        item = {"a": jnp.zeros(3, jnp.uint64)}
        stream = dealer.Stream(plan, [item])
        assert stream.take("beaver_mul", shape=(3,)) is item
        with pytest.raises(dealer.MaterialError, match="exhausted"):
            stream.take("beaver_mul", shape=(3,))
        stream = dealer.Stream(plan, [item])
        with pytest.raises(dealer.MaterialError, match="mismatch"):
            stream.take("beaver_mul", shape=(4,))
        stream = dealer.Stream(plan, [item])
        with pytest.raises(dealer.MaterialError, match="left unused"):
            stream.finish()


def test_items_get_distinct_randomness():
    x = sm.share(np.ones(64), jax.random.key(1))
    prog = sm.Program(lambda x, mat: (pr.mul(x.data, x.data, mat), pr.mul(x.data, x.data, mat)))
    mats = prog.material(3, x)
    a1, a2 = np.asarray(mats[0]["a"]), np.asarray(mats[2]["a"])
    assert not np.any(a1 == a2)


def test_protocol_that_branches_on_secret_cannot_plan():
    x = sm.share(np.ones(4), jax.random.key(1))

    def bad(x, mat):
        if x.data[0] > 0:  # data-dependent Python control flow
            return pr.mul(x.data, x.data, mat)
        return x.data

    with pytest.raises(jax.errors.TracerBoolConversionError):
        sm.run(bad, x, key=1)


def test_dealer_keys_and_mask_ids_are_fresh():
    d = sm.Dealer(0)
    k1, k2 = d.next_keys(), d.next_keys()
    assert not np.array_equal(jax.random.key_data(k1.query), jax.random.key_data(k2.query))
    np.testing.assert_array_equal(jax.random.key_data(k1.weights), jax.random.key_data(k2.weights))
    assert d.new_mask_id() != d.new_mask_id()


def test_inputs_without_party_axis_are_rejected():
    with pytest.raises(ValueError, match="leading party axis"):
        sm.run(_fn, jnp.zeros((3,)), jnp.zeros((3,)), key=1)


def test_network_estimate():
    c = sm.Cost(rounds=10, bytes_sent=(125_000_000, 1000))
    assert c.estimate(1.0, sm.LAN) == pytest.approx(1.0 + 10 * 0.5e-3 + 1.0)
    assert c.estimate(0.0, sm.WAN) == pytest.approx(10 * 4e-3 + 2.5)


def test_program_cache_is_bounded_and_clearable():
    from secmoe_jax import runtime

    fns = [lambda x, mat, i=i: x for i in range(runtime.PROGRAM_CACHE_SIZE + 5)]
    for f in fns:
        assert sm.compile(f) is sm.compile(f)  # cached while recent
    assert len(runtime._PROGRAMS) == runtime.PROGRAM_CACHE_SIZE
    assert all(k[0] is not fns[0] for k in runtime._PROGRAMS)  # least recently used went first
    sm.clear_caches()
    assert not runtime._PROGRAMS and dealer._jitted.cache_info().currsize == 0


def test_warm_compiles_both_phases_up_front_and_changes_no_result():
    rng = np.random.default_rng(3)
    x = sm.share(rng.normal(size=(5, 3)), jax.random.key(1))
    y = sm.share(rng.normal(size=(5, 3)), jax.random.key(2), owner=sm.SERVER)

    def block(a, b, mat):  # a scanned block too: its sub-plan's items are compiled as well
        def body(c, _, m):
            return sm.Secret(pr.mul(c.data, b.data, m)), None

        return pr.scan(body, _fn(a, b, mat)[0], None, mat, length=3)[0]

    keys = sm.runtime.as_keys(9)
    cold = sm.Program(block)
    want = cold.online(cold.material(keys, x, y), x, y)
    sm.clear_caches()
    compiled = []  # names of the programs XLA compiles

    def listen(event, secs, *, fun_name="", **kw):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        prog = sm.Program(block)
        prog.warm(keys, x, y, workers=2)
        phases = [n for n in compiled if "_online" in n or "dealer_" in n]
        assert any("_online" in n for n in phases) and any("dealer_" in n for n in phases)
        compiled.clear()
        got = prog.online(prog.material(keys, x, y), x, y)
        # (eager helpers such as the stacking of scanned items may still compile once)
        assert not [n for n in compiled if "_online" in n or "dealer_" in n], compiled
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    np.testing.assert_array_equal(np.asarray(got.data), np.asarray(want.data))
