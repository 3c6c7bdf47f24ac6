"""PF-ODE likelihood against the exact mixture log-density; Hutchinson unbiasedness; encode/decode."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import likelihood
from tests.oracles import ALL_SDES, mixture_2d, mixture_nd

EPS = 1e-5


def _exact(gmm, sde, x):
    return gmm.marginal_log_prob(sde, x, jnp.full((x.shape[0],), EPS))


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("dim", [2, 8])
def test_exact_trace_log_likelihood_matches_the_mixture(sde_name, dim):
    sde = ALL_SDES[sde_name]
    gmm = mixture_2d() if dim == 2 else mixture_nd(dim)
    x = gmm.sample(jax.random.key(0), 64)
    fn = jax.jit(
        likelihood.get_likelihood_fn(sde, hutchinson_type="exact", eps=EPS), static_argnums=1
    )
    logp, z, nfe = fn(jax.random.key(1), gmm.score_fn(sde), x)
    exact = _exact(gmm, sde, x)
    per_dim = np.abs(np.asarray(logp - exact)) / dim
    assert per_dim.max() < 0.01, per_dim.max()
    # With the true p_T in place of the Gaussian prior, what is left is the ODE solve's own error.
    true_prior = gmm.marginal_log_prob(sde, z, jnp.ones((64,)))
    ode_only = logp - sde.prior_logp(z) + true_prior
    assert float(jnp.max(jnp.abs(ode_only - exact))) / dim < 1e-3
    assert 10 < int(nfe) < 3000


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased(probe):
    sde, gmm = ALL_SDES["vp"], mixture_nd(8)
    x = gmm.sample(jax.random.key(0), 4)
    reps = 128
    xr = jnp.repeat(x, reps, axis=0)  # each copy gets its own probe within one solve
    fn = jax.jit(
        likelihood.get_likelihood_fn(sde, hutchinson_type=probe, eps=EPS), static_argnums=1
    )
    logp = np.asarray(fn(jax.random.key(1), gmm.score_fn(sde), xr)[0]).reshape(4, reps)
    exact_fn = jax.jit(
        likelihood.get_likelihood_fn(sde, hutchinson_type="exact", eps=EPS), static_argnums=1
    )
    ref = np.asarray(exact_fn(jax.random.key(1), gmm.score_fn(sde), x)[0])
    se = logp.std(1) / math.sqrt(reps)
    assert np.all(se > 0)
    assert np.all(np.abs(logp.mean(1) - ref) < 4 * se + 1e-3), (logp.mean(1), ref, se)


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_encode_decode_round_trip(sde_name):
    sde, gmm = ALL_SDES[sde_name], mixture_nd(4)
    x = gmm.sample(jax.random.key(0), 32)
    encode = jax.jit(likelihood.get_encoder(sde), static_argnums=0)
    decode = jax.jit(likelihood.get_decoder(sde), static_argnums=0)
    score_fn = gmm.score_fn(sde)
    z, _ = encode(score_fn, x)
    x_back, _ = decode(score_fn, z)
    assert float(jnp.max(jnp.abs(x_back - x))) < 1e-3
    # The code is distributed as the prior: its scale matches prior_std.
    assert float(jnp.std(z)) == pytest.approx(sde.prior_std, rel=0.35)


def test_bits_per_dim_of_uniform_densities():
    d = 3072
    # Uniform on [0, 1)^D in model space (not centered): exactly 8 bits per 8-bit value.
    assert float(likelihood.bits_per_dim(jnp.zeros(1), d, centered=False)[0]) == pytest.approx(8.0)
    # Uniform on [-1, 1)^D (centered): log p = -D log 2, also 8 bits.
    logp = jnp.full((1,), -d * math.log(2.0))
    assert float(likelihood.bits_per_dim(logp, d, centered=True)[0]) == pytest.approx(8.0)
    pixels = jnp.arange(256)
    u = likelihood.dequantize(jax.random.key(0), pixels)
    assert bool(jnp.all((u >= pixels / 256) & (u < (pixels + 1) / 256)))


def test_likelihood_errors():
    with pytest.raises(ValueError, match="hutchinson_type"):
        likelihood.get_likelihood_fn(ALL_SDES["vp"], hutchinson_type="skilling")
    with pytest.raises(ValueError, match="eps"):
        likelihood.get_likelihood_fn(ALL_SDES["vp"], eps=2.0)


def test_likelihood_over_four_devices_equals_one():
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sde, gmm = ALL_SDES["subvp"], mixture_nd(4)
    x = gmm.sample(jax.random.key(0), 16)
    fn = jax.jit(likelihood.get_likelihood_fn(sde, eps=EPS), static_argnums=1)
    one = fn(jax.random.key(1), gmm.score_fn(sde), x)[0]
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    four = fn(jax.random.key(1), gmm.score_fn(sde), xs)[0]
    assert len(four.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(four), np.asarray(one), rtol=1e-5, atol=1e-4)
