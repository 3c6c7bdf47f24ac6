"""Samplers with the exact mixture score reproduce the mixture (weights and moments within MC error)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import sampling
from score_sde.gmm import GaussianMixture
from score_sde.sde import VPSDE, SubVPSDE
from tests.oracles import ALL_SDES, assert_matches_mixture, mixture_2d, mixture_nd

N_SAMPLES = 3000


@functools.cache
def _run(sampler_factory, sde_name, gmm_key, dim, **kwargs):
    sde = ALL_SDES[sde_name]
    gmm = mixture_2d() if dim == 2 else mixture_nd(dim)
    sampler = sampler_factory(sde, (N_SAMPLES, dim), **kwargs)
    x, nfe = jax.jit(sampler, static_argnums=1)(jax.random.key(gmm_key), gmm.score_fn(sde))
    return np.asarray(x), int(nfe), gmm


PC_2D = [
    ("euler_maruyama", "none", False),
    ("reverse_diffusion", "none", False),
    ("ancestral_sampling", "none", False),
    ("reverse_diffusion", "ald", False),
    ("reverse_diffusion", "langevin", False),
    ("euler_maruyama", "ald", True),  # probability-flow predictor with a Langevin corrector
]


@pytest.mark.slow
@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("predictor,corrector,probability_flow", PC_2D)
def test_pc_sampler_2d(sde_name, predictor, corrector, probability_flow):
    if predictor == "ancestral_sampling" and sde_name == "subvp":
        pytest.skip("ancestral sampling is defined for VP and VE only (tested to raise below)")
    x, nfe, gmm = _run(
        sampling.get_pc_sampler,
        sde_name,
        0,
        2,
        predictor=predictor,
        corrector=corrector,
        snr=0.1,
        probability_flow=probability_flow,
    )
    # Discretization with N = 1000 leaves a small bias; the slack bounds it.
    assert_matches_mixture(x, gmm, slack=0.015)
    assert nfe == 1000 * (1 + (corrector != "none"))


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
def test_ode_sampler_2d(sde_name):
    x, nfe, gmm = _run(sampling.get_ode_sampler, sde_name, 1, 2)
    assert_matches_mixture(x, gmm, slack=0.01)
    assert 10 < nfe < 2000


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_samplers_in_16_dimensions(sde_name):
    for factory, kwargs in [
        (sampling.get_pc_sampler, dict(predictor="reverse_diffusion", corrector="langevin")),
        (sampling.get_pc_sampler, dict(predictor="ancestral_sampling", corrector="none")),
        (sampling.get_ode_sampler, {}),
    ]:
        x, _, gmm = _run(factory, sde_name, 2, 16, **kwargs)
        assert_matches_mixture(x, gmm, slack=0.03)


def test_per_example_langevin_norm_is_biased_batch_norm_is_not():
    """The published snr = 0.16 on a 16-D mixture: worst variance error of each step-size rule."""
    gmm = mixture_nd(16)
    errors = {}
    for norm in ("batch", "example"):
        x, _, _ = _run(
            sampling.get_pc_sampler,
            "vp",
            2,
            16,
            predictor="reverse_diffusion",
            corrector="langevin",
            snr=0.16,
            langevin_norm=norm,
        )
        errors[norm] = float(np.max(np.abs(np.diag(np.cov(x.T)) - np.diag(gmm.covariance()))))
    assert errors["batch"] < 0.06 < errors["example"], errors


@pytest.mark.parametrize("norm, groups", [("mean", 1), ("mean_per_device", 4), ("batch", 1)])
def test_langevin_step_rules_against_the_rule_written_out(norm, groups):
    """One Langevin step of each rule against numpy: eps = 2 alpha (snr r)^2 with r the original
    code's mean ||z|| / mean ||s|| over the batch (mean) or over each device's slice of it
    (mean_per_device, the original under pmap), or ours, the RMS over the batch (batch)."""
    sde = VPSDE(N=100)
    key = jax.random.key(3)
    x = jax.random.normal(jax.random.key(4), (8, 5)) * jnp.arange(1.0, 9.0)[:, None]
    t = jnp.full((8,), 0.4)
    score_fn = lambda y, t: -y / (1.0 + t[:, None])  # norms that differ row by row
    got, got_mean = sampling.langevin(key, sde, score_fn, x, t, 0.16, 1, norm, groups=groups)

    xs, grad = np.asarray(x, np.float64), np.asarray(score_fn(x, t), np.float64)
    z = np.asarray(jax.random.normal(jax.random.fold_in(key, 0), x.shape), np.float64)
    zn, gn = np.linalg.norm(z, axis=1), np.linalg.norm(grad, axis=1)
    if norm == "batch":
        r = np.full(8, np.sqrt(np.mean(zn**2) / np.mean(gn**2)))
    else:
        r = np.concatenate(
            [np.full(8 // groups, zg.mean() / gg.mean()) for zg, gg in zip(
                np.split(zn, groups), np.split(gn, groups), strict=True)]
        )  # fmt: skip
    alpha = float(np.asarray(sde.alphas)[int(np.asarray(sde.discrete_index(t))[0])])
    eps = 2 * alpha * (0.16 * r) ** 2
    want_mean = xs + eps[:, None] * grad
    np.testing.assert_allclose(got_mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, want_mean + np.sqrt(2 * eps)[:, None] * z, rtol=1e-5, atol=1e-6)


def test_the_per_device_rule_takes_its_groups_from_the_batch_sharding(monkeypatch):
    """In the PC sampler, 'mean_per_device' on a batch sharded over 4 devices is the rule over 4
    slices (as set by hand); unsharded, it is the global 'mean' (one device)."""
    from score_sde import parallel

    sde = VPSDE(N=20)
    score_fn = lambda y, t: -y / (1.0 + t[:, None] ** 2)
    sharded = parallel.batch_sharding(parallel.make_mesh())
    assert jax.device_count() == 4

    def run(norm, sharding):
        pc = sampling.get_pc_sampler(sde, (8, 3), langevin_norm=norm, sharding=sharding)
        return np.asarray(jax.jit(pc, static_argnums=1)(jax.random.key(0), score_fn)[0])

    np.testing.assert_array_equal(run("mean_per_device", None), run("mean", None))
    per_device = run("mean_per_device", sharded)
    assert not np.allclose(per_device, run("mean", sharded))
    by_hand = functools.partial(sampling.langevin, groups=4)
    monkeypatch.setattr(sampling, "get_corrector", lambda name: (by_hand, 1))
    np.testing.assert_allclose(run("mean_per_device", None), per_device, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sde_name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("corrector", ["langevin", "ald"])
def test_corrector_alone_converges_to_p_t(sde_name, corrector):
    """Langevin at fixed t moves a wrong distribution onto p_t (a Gaussian here, so it mixes)."""
    sde = ALL_SDES[sde_name]
    d, t = 16, 0.6  # for VE, std(t) must be comparable to the data scale for ALD to move
    gmm = GaussianMixture.isotropic([1.0], 0.5 * jnp.ones((1, d)), [0.7])
    alpha, std = sde.marginal_coeffs(jnp.asarray(t))
    target = GaussianMixture.isotropic([1.0], alpha * gmm.means, jnp.sqrt(alpha**2 * 0.49 + std**2))
    update, _ = sampling.get_corrector(corrector)
    x0 = jax.random.normal(jax.random.key(0), (4000, d))  # wrong mean and variance
    tt = jnp.full((4000,), t)

    @jax.jit
    def run(x):
        return update(jax.random.key(1), sde, gmm.score_fn(sde), x, tt, 0.1, 400)[0]

    assert_matches_mixture(run(x0), target, slack=0.03 * float(target.covs[0, 0, 0]))


def test_pc_sampler_with_sharded_batch_equals_unsharded():
    """Four devices, batch split along 'data': the same samples as on one device (global norms)."""
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    sde, gmm = ALL_SDES["ve"], mixture_2d()
    mesh = Mesh(np.array(jax.devices()[:4]), ("data",))
    sharding = NamedSharding(mesh, P("data"))
    out = {}
    for name, shard in (("one", None), ("four", sharding)):
        sampler = sampling.get_pc_sampler(
            sde, (64, 2), "reverse_diffusion", "langevin", sharding=shard
        )
        sampler_jit = jax.jit(sampler, static_argnums=1)
        out[name] = sampler_jit(jax.random.key(5), gmm.score_fn(sde))[0]
    assert len(jax.devices()) >= 4 and len(out["four"].sharding.device_set) == 4
    np.testing.assert_allclose(out["one"], out["four"], rtol=1e-4, atol=1e-4)


def test_nfe_and_errors():
    sde = ALL_SDES["vp"]
    assert (
        sampling.get_pc_sampler(sde, (2, 2), "reverse_diffusion", "langevin", n_steps=3) is not None
    )
    score = lambda x, t: -x
    _, nfe = sampling.get_pc_sampler(sde, (2, 2), "reverse_diffusion", "langevin", n_steps=3)(
        jax.random.key(0), score
    )
    assert nfe == 1000 * 4
    _, nfe = sampling.get_pc_sampler(sde, (2, 2), "none", "ald", n_steps=2)(
        jax.random.key(0), score
    )
    assert nfe == 1000 * 2
    with pytest.raises(ValueError, match="valid names"):
        sampling.get_pc_sampler(sde, (2, 2), "heun", "none")
    with pytest.raises(ValueError, match="valid names"):
        sampling.get_pc_sampler(sde, (2, 2), "none", "hmc")
    with pytest.raises(ValueError, match="VPSDE or VESDE"):
        sampling.get_pc_sampler(SubVPSDE(), (2, 2), "ancestral_sampling", "none")
    with pytest.raises(ValueError, match="probability-flow"):
        sampling.get_pc_sampler(sde, (2, 2), "ancestral_sampling", "none", probability_flow=True)(
            jax.random.key(0), score
        )
    with pytest.raises(ValueError, match=r"beta_max / N < 1.*num_scales"):
        sampling.get_pc_sampler(VPSDE(N=20), (2, 2), "ancestral_sampling", "none")
    with pytest.raises(ValueError, match="predictor reverse_diffusion"):
        sampling.get_pc_sampler(VPSDE(N=19), (2, 2), "reverse_diffusion", "none")
    with pytest.raises(ValueError, match="corrector langevin"):
        sampling.get_pc_sampler(VPSDE(N=10), (2, 2), "euler_maruyama", "langevin")
    x, _ = sampling.get_pc_sampler(VPSDE(N=10), (2, 2), "euler_maruyama", "none")(
        jax.random.key(0), score
    )
    assert bool(jnp.all(jnp.isfinite(x)))
    with pytest.raises(ValueError, match="'pc', 'ode'"):
        sampling.get_sampler(sde, (2, 2), method="ddim")
