"""Shared closed-form test fixtures: Gaussian mixtures and Monte-Carlo tolerances."""

import jax
import jax.numpy as jnp
import numpy as np

from score_sde.gmm import GaussianMixture
from score_sde.sde import VESDE, VPSDE, FlowPath, SubVPSDE

ALL_SDES = {
    "vp": VPSDE(),
    "subvp": SubVPSDE(),
    "ve": VESDE(sigma_min=0.01, sigma_max=50.0),
    "flow": FlowPath("linear"),  # flow matching's linear path (rectified flow)
}


def mixture_2d() -> GaussianMixture:
    """Two well separated anisotropic components, mean zero overall (so the VE prior fits well)."""
    weights = jnp.array([0.3, 0.7])
    means = jnp.array([[-1.4, -0.7], [0.6, 0.3]])
    covs = jnp.array([[[0.09, 0.03], [0.03, 0.04]], [[0.04, -0.01], [-0.01, 0.06]]])
    return GaussianMixture(weights, means, covs)


def mixture_nd(d: int, seed: int = 0) -> GaussianMixture:
    """Three components in d dimensions with random means and isotropic covariances."""
    means = 1.2 * jax.random.normal(jax.random.key(seed), (3, d))
    means = means - jnp.array([0.2, 0.3, 0.5]) @ means
    return GaussianMixture.isotropic([0.2, 0.3, 0.5], means, [0.4, 0.6, 0.5])


def assert_matches_mixture(x, gmm: GaussianMixture, *, n_se=4.5, slack=0.0):
    """Samples x [n, D] have the mixture's component weights, mean and covariance within MC error."""
    x = np.asarray(x, np.float64)
    n = x.shape[0]
    assert np.all(np.isfinite(x)), "non-finite samples"
    w = np.asarray(gmm.weights, np.float64)
    freq = (
        np.bincount(
            np.asarray(jnp.argmax(gmm.responsibilities(jnp.asarray(x, jnp.float32)), -1)),
            minlength=len(w),
        )
        / n
    )
    se_w = np.sqrt(w * (1 - w) / n)
    assert np.all(np.abs(freq - w) <= n_se * se_w + slack), (freq, w)
    mean = np.asarray(gmm.mean(), np.float64)
    cov = np.asarray(gmm.covariance(), np.float64)
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(x.mean(0) - mean) <= n_se * se_mean + slack), (x.mean(0), mean)
    emp_cov = np.cov(x.T)
    centered = x - mean
    se_cov = (centered[:, :, None] * centered[:, None, :]).std(0) / np.sqrt(n)
    assert np.all(np.abs(emp_cov - cov) <= n_se * se_cov + slack), (emp_cov, cov)
