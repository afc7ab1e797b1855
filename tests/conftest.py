"""Test environment: two CPU devices, a seeded key fixture, scoped x64.

x64 is NOT switched on globally: the library scopes ``jax.enable_x64(True)`` in its entry
points, and the suite checks that this works with the user's default configuration. Tests of
raw ring kernels use the ``x64`` fixture.
"""

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 2)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.fixture
def key():
    return jax.random.key(20260122)
