"""Test environment: two CPU devices, a seeded key fixture, scoped x64, fast compiles.

x64 is NOT switched on globally: the library scopes ``jax.enable_x64(True)`` in its entry
points, and the suite checks that this works with the user's default configuration. Tests of
raw ring kernels use the ``x64`` fixture.
"""

import gc
import os

import jax
import pytest

import secmoe_jax

jax.config.update("jax_num_cpu_devices", 2)
# Tests run many small, distinct programs: XLA's optimisation passes cost more than they save
# there (about half the suite's CPU time). Results are unchanged: ring arithmetic is exact and
# no test depends on fused float rounding. SECMOE_TEST_OPTIMIZE=1 restores the defaults.
if os.environ.get("SECMOE_TEST_OPTIMIZE") != "1":
    jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Free each module's compiled executables when it ends.

    Every executable keeps its code mapped; the whole suite in one process would otherwise hold
    tens of thousands of mappings and run into the kernel's per-process map limit
    (``vm.max_map_count``, 65530 by default), which kills the process in the middle of a compile.
    """
    yield
    secmoe_jax.clear_caches()
    gc.collect()


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    return jax.random.key(20260122)
