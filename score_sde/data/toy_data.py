"""2-D toy distributions for the embedded demo and fast tests.

`sample_toy(name, key, n) -> [n, 2]` float32, a pure function of the key. Every toy is scaled to
roughly unit spread so the VP/sub-VP SDEs with default betas suit it. `toy_density(name)` gives the
closed-form density where one exists ('gmm': a `score_sde.gmm.GaussianMixture`).

Names: checkerboard, eight_gaussians, two_moons, swiss_roll, gmm.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

TOY_NAMES = ("checkerboard", "eight_gaussians", "two_moons", "swiss_roll", "gmm")


def _checkerboard(key, n):
    """Uniform on the 8 dark squares of a 4x4 board on [-2, 2]^2."""
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.randint(k3, (n,), 0, 2)
    x2 = x2 + jnp.floor(x1) % 2
    return jnp.stack([x1, x2], -1)


def _eight_gaussians(key, n):
    """Eight isotropic Gaussians (std 0.1) evenly spaced on the circle of radius 1.5."""
    kc, kz = jax.random.split(key)
    angle = 2 * math.pi * jax.random.randint(kc, (n,), 0, 8) / 8
    centers = 1.5 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
    return centers + 0.1 * jax.random.normal(kz, (n, 2))


def _two_moons(key, n):
    """Two interleaved half circles (as scikit-learn's make_moons, noise 0.05), centered."""
    ku, kc, kz = jax.random.split(key, 3)
    s = math.pi * jax.random.uniform(ku, (n,))
    upper = jax.random.bernoulli(kc, 0.5, (n,))
    x = jnp.where(upper, jnp.cos(s), 1.0 - jnp.cos(s))
    y = jnp.where(upper, jnp.sin(s), 0.5 - jnp.sin(s))
    pts = jnp.stack([x - 0.5, y - 0.25], -1) * 1.5
    return pts + 0.05 * jax.random.normal(kz, (n, 2))


def _swiss_roll(key, n):
    """The 2-D swiss roll (x, z of scikit-learn's make_swiss_roll, noise 0.25) divided by 7."""
    ku, kz = jax.random.split(key)
    t = 1.5 * math.pi * (1 + 2 * jax.random.uniform(ku, (n,)))
    pts = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], -1)
    return (pts + 0.25 * jax.random.normal(kz, (n, 2))) / 7.0


def toy_density(name: str):
    """The exact density of toy `name` as a GaussianMixture, or a ValueError if it has none."""
    if name == "gmm":
        from score_sde.gmm import GaussianMixture

        # Five components of different shapes and weights: far from any single Gaussian.
        means = jnp.array([[-1.5, -1.0], [1.5, -1.0], [0.0, 1.5], [-1.2, 1.2], [1.2, 0.6]])
        covs = jnp.array(
            [
                [[0.10, 0.06], [0.06, 0.10]],
                [[0.05, 0.0], [0.0, 0.20]],
                [[0.20, 0.0], [0.0, 0.03]],
                [[0.03, 0.0], [0.0, 0.03]],
                [[0.06, -0.04], [-0.04, 0.06]],
            ]
        )
        weights = jnp.array([0.3, 0.2, 0.2, 0.15, 0.15])
        return GaussianMixture(weights, means, covs)
    if name == "eight_gaussians":
        from score_sde.gmm import GaussianMixture

        angle = 2 * jnp.pi * jnp.arange(8) / 8
        means = 1.5 * jnp.stack([jnp.cos(angle), jnp.sin(angle)], -1)
        return GaussianMixture.isotropic(jnp.full((8,), 1 / 8), means, 0.1)
    raise ValueError(
        f"toy dataset {name!r} has no closed-form density; use 'gmm' or 'eight_gaussians'"
    )


def sample_toy(name: str, key: jax.Array, n: int) -> jax.Array:
    """n samples [n, 2] float32 from the toy distribution `name` (see TOY_NAMES)."""
    match name:
        case "checkerboard":
            x = _checkerboard(key, n)
        case "eight_gaussians":
            x = _eight_gaussians(key, n)
        case "two_moons":
            x = _two_moons(key, n)
        case "swiss_roll":
            x = _swiss_roll(key, n)
        case "gmm":
            x = toy_density("gmm").sample(key, n)
        case _:
            raise ValueError(f"unknown toy dataset {name!r}; choose one of {', '.join(TOY_NAMES)}")
    return x.astype(jnp.float32)


def gaussian_fit_log_likelihood(train: jax.Array, test: jax.Array) -> jax.Array:
    """Mean test log-likelihood (nats) of the max-likelihood single Gaussian fit to `train` [n, D].

    The baseline a score model has to beat: log N(x; mean, cov) averaged over test [m, D].
    """
    mean = train.mean(0)
    cov = jnp.cov(train, rowvar=False).reshape(train.shape[1], train.shape[1])
    d = train.shape[1]
    diff = test - mean
    sol = jnp.linalg.solve(cov, diff.T).T
    _, logdet = jnp.linalg.slogdet(cov)
    return jnp.mean(-0.5 * jnp.sum(diff * sol, -1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi))
