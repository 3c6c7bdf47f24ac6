"""Classifier guidance and classifier-free guidance with exact scores and classifiers.

- Classifier guidance with the exact mixture classifier p_t(y | x) (responsibilities): weight 1
  reproduces component y; the mass on component y grows with the weight.
- Classifier-free guidance: w = 0 gives the conditional. For a linear-Gaussian class model
  (p(x | c) = N(c, s2), c ~ N(0, tau2), so p(x) = N(0, s2 + tau2)) every score is linear and the
  guided sampler's output is Gaussian with moments given by two scalar ODEs (`_cfg_prediction`):
  the measured variance follows them and decreases with w. For a two-Gaussian mixture the
  within-class variance also decreases (measured), and neither matches the tilted target
  p(x | y)^(1 + w) p(x)^(-w) (the guided scores are not the scores of its diffusion).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from score_sde import guidance, sampling
from score_sde.gmm import GaussianMixture
from tests.oracles import ALL_SDES, assert_matches_mixture, mixture_2d, mixture_nd

N = 4000


def _sampler(method, sde, shape):
    if method == "pc":
        return sampling.get_pc_sampler(sde, shape, "reverse_diffusion", "none")
    return sampling.get_ode_sampler(sde, shape)


def _draw(method, sde_name, shape, score_fn, seed=0):
    sde = ALL_SDES[sde_name]
    fn = jax.jit(_sampler(method, sde, shape), static_argnums=1)
    return np.asarray(fn(jax.random.key(seed), score_fn)[0])


def _component(gmm, k):
    return GaussianMixture(jnp.ones(1), gmm.means[k : k + 1], gmm.covs[k : k + 1])


# ------------------------------------------------------------------------------ classifier guidance


def _classifier_guided(gmm, sde_name, label, scale, n):
    sde = ALL_SDES[sde_name]
    labels = jnp.full((n,), label, jnp.int32)
    log_prob = gmm.class_log_prob_fn(sde, labels)
    return guidance.classifier_guided_score_fn(gmm.score_fn(sde), log_prob, scale)


def test_exact_classifier_log_prob_and_class_score():
    gmm, sde = mixture_2d(), ALL_SDES["vp"]
    x = jax.random.normal(jax.random.key(0), (6, 2))
    t = jnp.full((6,), 0.3)
    labels = jnp.array([0, 1, 0, 1, 1, 0])
    resp = gmm.evaluate(x, *sde.marginal_coeffs(t))[2]
    np.testing.assert_allclose(
        gmm.class_log_prob_fn(sde, labels)(x, t),
        np.log(resp[np.arange(6), labels]),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        gmm.score_fn(sde)(x, t),
        gmm.marginal_score(sde, x, t),
        rtol=1e-4,
        atol=1e-4,
    )
    # grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x) (Bayes), exactly.
    guided = _classifier_guided(gmm, "vp", 0, 1.0, 6)
    labels0 = jnp.zeros((6,), jnp.int32)
    np.testing.assert_allclose(
        guided(x, t), gmm.class_score_fn(sde, labels0)(x, t), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    "method,sde_name,dim,label",
    [("pc", "vp", 2, 0), ("ode", "ve", 2, 0), ("pc", "subvp", 8, 1), ("ode", "vp", 8, 0)],
)
def test_classifier_guidance_weight_one_is_the_class_conditional(method, sde_name, dim, label):
    gmm = mixture_2d() if dim == 2 else mixture_nd(dim)
    x = _draw(method, sde_name, (N, dim), _classifier_guided(gmm, sde_name, label, 1.0, N))
    assert_matches_mixture(x, _component(gmm, label), slack=0.01 if dim == 2 else 0.03)


def _overlapping():
    """Two overlapping 2-D components: p(y = 0 | x) stays far from 0 and 1 over much of the data."""
    return GaussianMixture.isotropic([0.3, 0.7], [[-0.5, 0.0], [0.5, 0.0]], 0.5)


@functools.cache
def _concentration(method):
    """Mean p_0(y = 0 | x) of guided samples for guidance weights 0, 1, 2, 4."""
    gmm = _overlapping()
    out = []
    for scale in (0.0, 1.0, 2.0, 4.0):
        x = _draw(method, "vp", (N, 2), _classifier_guided(gmm, "vp", 0, scale, N), seed=2)
        out.append(float(np.mean(gmm.responsibilities(jnp.asarray(x))[:, 0])))
    return out


# Measured mean p(y = 0 | x) at w = 0, 1, 2, 4: PC 0.310, 0.677, 0.863, 0.951;
# ODE 0.302, 0.666, 0.897, 0.987. Exact at w = 0 and 1: 0.299 and 0.669.
@pytest.mark.slow
@pytest.mark.parametrize("method", ["pc", "ode"])
def test_classifier_guidance_concentrates_on_the_class_as_the_weight_grows(method):
    gmm = _overlapping()
    xs, comp = gmm.sample_with_labels(jax.random.key(7), 200_000)
    resp = np.asarray(gmm.responsibilities(xs)[:, 0])
    exact = [resp.mean(), resp[np.asarray(comp) == 0].mean()]  # E_p[r_0], E_{p(x|0)}[r_0]
    got = _concentration(method)
    print("CONC", method, np.round(got, 3), np.round(exact, 3))
    se = 0.35 / np.sqrt(N)  # std of r_0 is at most ~0.35 here
    np.testing.assert_allclose(got[:2], exact, atol=4.5 * se + 0.005)
    assert all(b > a + 0.05 for a, b in zip(got, got[1:], strict=False)), got
    assert got[-1] > 0.85, got


# ------------------------------------------------------------------------------ classifier-free


def _cfg_prediction(sde, scale, y, s2, tau2, *, ode, eps=1e-3, steps=4000):
    """Mean and variance at eps of the CFG sampler for p(x | c) = N(c, s2), p(x) = N(0, s2 + tau2).

    With f = c(t) x, the guided score s_w(x, t) = -lam(t) x + b(t) is linear:
        lam = (1 + w) a_c - w a_u,  b = (1 + w) a_c alpha y,
        a_c = 1 / (alpha^2 s2 + std^2),  a_u = 1 / (alpha^2 (s2 + tau2) + std^2),
    so in reverse time tau = T - t, with k = 1 (SDE) or 1/2 (ODE), r = -c - k g^2 lam:
        dm/dtau = r m + k g^2 b,   dV/dtau = 2 r V + (g^2 if SDE else 0),
    from the prior N(0, prior_std^2). RK4 in float64.
    """

    k = 0.5 if ode else 1.0
    ts = np.linspace(sde.T, eps, steps + 1)
    grid = np.concatenate([ts, 0.5 * (ts[:-1] + ts[1:])])  # ends, then midpoints
    tt = jnp.asarray(grid, jnp.float32)
    drift, g = sde.sde(jnp.ones((len(grid), 1)), tt)
    alpha, std = sde.marginal_coeffs(tt)
    c, g2 = np.asarray(drift[:, 0], np.float64), np.asarray(g, np.float64) ** 2
    alpha, std = np.asarray(alpha, np.float64), np.asarray(std, np.float64)
    a_c = 1 / (alpha**2 * s2 + std**2)
    a_u = 1 / (alpha**2 * (s2 + tau2) + std**2)
    lam, b = (1 + scale) * a_c - scale * a_u, (1 + scale) * a_c * alpha * y
    r = -c - k * g2 * lam

    def rhs(i, m, v):
        return np.array([r[i] * m + k * g2[i] * b[i], 2 * r[i] * v + (0.0 if ode else g2[i])])

    state = np.array([0.0, sde.prior_std**2])
    n = len(ts)
    for i in range(steps):
        h, mid = ts[i] - ts[i + 1], n + i
        k1 = rhs(i, *state)
        k2 = rhs(mid, *(state + 0.5 * h * k1))
        k3 = rhs(mid, *(state + 0.5 * h * k2))
        k4 = rhs(i + 1, *(state + h * k3))
        state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return state


# Measured (VP, N = 4000) mean / variance vs the prediction, s2 = 0.04, tau2 = 1, y = 0.8:
#   w = 0: PC 0.801 / 0.0409, ODE 0.795 / 0.0410; predicted 0.800 / 0.0401 (tilted 0.800 / 0.040)
#   w = 1: PC 0.832 / 0.0141 (pred 0.831 / 0.0139); ODE 0.871 / 0.00158 (pred 0.872 / 0.00155);
#          the tilted target p(x|c)^2 / p(x) has mean 0.816, variance 0.0204
#   w = 3: PC 0.832 / 0.00596 (pred 0.832 / 0.00596); ODE variance -> 0 (pred 4e-7)
@pytest.mark.parametrize("method", ["pc", "ode"])
def test_classifier_free_guidance_linear_gaussian_matches_prediction(method):
    sde = ALL_SDES["vp"]
    s2, tau2, y = 0.04, 1.0, 0.8
    cond = GaussianMixture(jnp.ones(1), jnp.array([[y]]), jnp.array([[[s2]]]))
    uncond = GaussianMixture(jnp.ones(1), jnp.zeros((1, 1)), jnp.array([[[s2 + tau2]]]))
    variances = []
    for scale in (0.0, 1.0, 3.0):
        score = guidance.cfg_score_fn(cond.score_fn(sde), uncond.score_fn(sde), scale)
        x = _draw(method, "vp", (N, 1), score)[:, 0]
        m, v = _cfg_prediction(sde, scale, y, s2, tau2, ode=method == "ode")
        se_m, se_v = np.sqrt(v / N), v * np.sqrt(2 / N)
        assert abs(x.mean() - m) < 4.5 * se_m + 0.01, (scale, x.mean(), m)
        assert abs(x.var() - v) < 4.5 * se_v + 0.001, (scale, x.var(), v)
        variances.append(float(x.var()))
    assert variances[0] > variances[1] > variances[2], variances


def _two_classes():
    return GaussianMixture(
        jnp.array([0.5, 0.5]), jnp.array([[-1.0], [1.0]]), jnp.array([[[0.25]], [[0.25]]])
    )


def _cfg_mixture(method, scale):
    gmm, sde = _two_classes(), ALL_SDES["vp"]
    labels = jnp.ones((N,), jnp.int32)
    cond = gmm.class_score_fn(sde, labels)
    return _draw(method, "vp", (N, 1), guidance.cfg_score_fn(cond, gmm.score_fn(sde), scale), 1)


# Measured within-class mean / variance (class y = 1 at +1, variance 0.25, other class at -1):
#   w:     0            0.5          1            2            4
#   PC     0.998/0.236  1.106/0.195  1.166/0.185  1.239/0.178  1.320/0.175
#   ODE    0.986/0.249  1.179/0.162  1.312/0.129  1.512/0.099  1.800/0.075
#   tilted 1.000/0.250  1.023/0.229  1.036/0.219  1.051/0.209  1.070/0.198
@pytest.mark.parametrize("method", ["pc", "ode"])
def test_classifier_free_guidance_two_classes(method):
    x0 = _cfg_mixture(method, 0.0)[:, 0]
    # w = 0 is the conditional N(1, 0.25) within Monte-Carlo error.
    comp = GaussianMixture(jnp.ones(1), jnp.ones((1, 1)), jnp.full((1, 1, 1), 0.25))
    assert_matches_mixture(x0[:, None], comp, slack=0.01)
    stats = [(x0.mean(), x0.var())]
    for scale in (1.0, 4.0):
        x = _cfg_mixture(method, scale)[:, 0]
        stats.append((x.mean(), x.var()))
    means, variances = zip(*stats, strict=True)
    assert means[0] < means[1] < means[2], means  # pushed away from the other class
    assert variances[0] > variances[1] > variances[2], variances  # sharper
    assert variances[2] < 0.8 * 0.25, variances


# ------------------------------------------------------------------------------ training pieces


def test_label_dropout_is_a_pure_function_of_the_key():
    labels = jnp.arange(10_000) % 10
    a = guidance.drop_labels(jax.random.key(0), labels, 0.2, 10)
    b = guidance.drop_labels(jax.random.key(0), labels, 0.2, 10)
    np.testing.assert_array_equal(a, b)
    dropped = np.asarray(a == 10)
    assert abs(dropped.mean() - 0.2) < 0.02
    np.testing.assert_array_equal(np.asarray(a)[~dropped], np.asarray(labels)[~dropped])

    seen = []

    def loss_fn(params, key, batch):
        seen.append(batch["label"])
        return jnp.zeros(())

    wrapped = guidance.with_label_dropout(loss_fn, 0.5, 10)
    wrapped(None, jax.random.key(1), {"x": jnp.zeros((64, 2)), "label": jnp.zeros(64, jnp.int32)})
    assert set(np.unique(np.asarray(seen[0]))) == {0, 10}
    assert guidance.with_label_dropout(loss_fn, 0.0, 10) is loss_fn
    with pytest.raises(ValueError, match="must lie in"):
        guidance.with_label_dropout(loss_fn, 1.0, 10)
