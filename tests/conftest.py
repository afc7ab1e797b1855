"""Test environment: two CPU devices, a seeded key fixture, scoped x64, fast compiles.

x64 is NOT switched on globally: the library scopes ``jax.enable_x64(True)`` in its entry
points, and the suite checks that this works with the user's default configuration. Tests of
raw ring kernels use the ``x64`` fixture.
"""

import os

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 2)
# Tests run many small, distinct programs: XLA's optimisation passes cost more than they save
# there (about half the suite's CPU time). Results are unchanged: ring arithmetic is exact and
# no test depends on fused float rounding. SECMOE_TEST_OPTIMIZE=1 restores the defaults.
if os.environ.get("SECMOE_TEST_OPTIMIZE") != "1":
    jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    return jax.random.key(20260122)
