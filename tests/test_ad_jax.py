"""effai_fast.ad against JAX (when installed): gradients, JVPs, HVPs, Hessians, batched."""

import numpy as np
import pytest
from _ad_funcs import SUITE, point, random_program, run_program

from effai_fast import ad

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy


def _jaxify(f):
    return lambda x: f(x, jnp)


@pytest.mark.parametrize("name", sorted(SUITE))
def test_grad_jvp_vs_jax(name, rng):
    f, n = SUITE[name]
    x = point(name, rng)
    jf = _jaxify(f)
    np.testing.assert_allclose(ad.grad(f)(x), jax.jit(jax.grad(jf))(x), rtol=1e-12, atol=1e-12)
    v = rng.normal(size=n)
    np.testing.assert_allclose(ad.jvp(f, (x,), (v,))[1],
                               jax.jit(lambda x, v: jax.jvp(jf, (x,), (v,))[1])(x, v),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["rosen", "kinks", "hill_rss"])
def test_hessian_vs_jax(name, rng):
    # (JAX's eager Hessian is slow on a busy machine: a subset of the suite)
    f, n = SUITE[name]
    x = point(name, rng)
    v = rng.normal(size=n)
    H = jax.jit(jax.hessian(_jaxify(f)))(x)
    np.testing.assert_allclose(ad.hessian(f)(x), H, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ad.hvp(f)(x, v), H @ v, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k", range(6))
def test_random_programs_vs_jax(k, seed):
    rng = np.random.default_rng(seed * 7919 + k)
    n = int(rng.integers(1, 5))
    prog = random_program(rng, n, int(rng.integers(3, 25)))
    x = rng.uniform(-1, 1, size=n)
    g = ad.grad(lambda x: run_program(prog, x))(x)
    gj = jax.jit(jax.grad(lambda x: run_program(prog, x, jnp)))(x)
    np.testing.assert_allclose(g, gj, rtol=1e-11, atol=1e-12)


def test_batched_vs_jax_vmap(rng):
    f, n = SUITE["transcendental"]
    X = rng.uniform(-1, 1, size=(500, n))
    tape = ad.trace(f, n)
    v, G = tape.value_and_grad(X, n_threads=2)
    Gj = jax.jit(jax.vmap(jax.grad(_jaxify(f))))(X)
    np.testing.assert_allclose(G, Gj, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v, jax.jit(jax.vmap(_jaxify(f)))(X), rtol=1e-13)
