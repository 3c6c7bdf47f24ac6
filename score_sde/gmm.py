"""Gaussian mixtures: the closed-form oracle of score-based models.

Under any linear SDE with kernel p_0t(x_t | x_0) = N(alpha(t) x_0, std(t)^2 I), a mixture
p_0 = sum_k w_k N(mu_k, S_k) stays a mixture with the same weights:
    p_t = sum_k w_k N(alpha mu_k, alpha^2 S_k + std^2 I),
so its score, log-density and samples are exact at every t. Tests of samplers, likelihoods and
guidance compare against these; the known-density toy dataset uses them too.

Shapes: x is [B, D]; t is [B]; K components.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from score_sde.sde import SDE


class GaussianMixture(NamedTuple):
    """weights [K] (summing to 1), means [K, D], covs [K, D, D] (symmetric positive definite)."""

    weights: jax.Array
    means: jax.Array
    covs: jax.Array

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @staticmethod
    def isotropic(weights, means, std) -> GaussianMixture:
        """Mixture with covariance std_k^2 I per component (std: scalar or [K])."""
        means = jnp.asarray(means, jnp.float32)
        k, d = means.shape
        std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), (k,))
        covs = std[:, None, None] ** 2 * jnp.eye(d)[None]
        return GaussianMixture(jnp.asarray(weights, jnp.float32), means, covs)

    def _eig(self):
        lam, u = jnp.linalg.eigh(self.covs)  # [K, D], [K, D, D]
        return lam, u

    def _component_terms(self, x, alpha, std):
        """Per-component log N(x; alpha mu_k, alpha^2 S_k + std^2 I) [K] and score [K, D] for one x [D]."""
        lam, u = self._eig()
        c = alpha**2 * lam + std**2  # [K, D]
        y = jnp.einsum("kdj,kd->kj", u, x[None] - alpha * self.means)  # U^T (x - alpha mu)
        logn = -0.5 * jnp.sum(y**2 / c + jnp.log(c), -1) - 0.5 * self.dim * math.log(2 * math.pi)
        score = -jnp.einsum("kdj,kj->kd", u, y / c)
        return logn, score

    def _one(self, x, alpha, std):
        logn, score = self._component_terms(x, alpha, std)
        logits = jnp.log(self.weights) + logn
        post = jax.nn.softmax(logits)
        return jax.nn.logsumexp(logits), post @ score, post

    def evaluate(self, x, alpha, std):
        """(log p [B], score [B, D], responsibilities [B, K]) of the mixture pushed through
        x -> alpha x + std z (alpha, std: scalars or [B])."""
        alpha = jnp.broadcast_to(alpha, x.shape[:1])
        std = jnp.broadcast_to(std, x.shape[:1])
        return jax.vmap(self._one)(x, alpha, std)

    def log_prob(self, x: jax.Array) -> jax.Array:
        """log p_0(x) [B] for x [B, D]."""
        return self.evaluate(x, 1.0, 0.0)[0]

    def score(self, x: jax.Array) -> jax.Array:
        """grad log p_0(x) [B, D]."""
        return self.evaluate(x, 1.0, 0.0)[1]

    def responsibilities(self, x: jax.Array) -> jax.Array:
        """Posterior component probabilities p(k | x) [B, K] under p_0."""
        return self.evaluate(x, 1.0, 0.0)[2]

    def marginal_log_prob(self, sde: SDE, x: jax.Array, t: jax.Array) -> jax.Array:
        """log p_t(x) [B] under the SDE's perturbation kernel."""
        return self.evaluate(x, *sde.marginal_coeffs(t))[0]

    def marginal_score(self, sde: SDE, x: jax.Array, t: jax.Array) -> jax.Array:
        """grad_x log p_t(x) [B, D]."""
        return self.evaluate(x, *sde.marginal_coeffs(t))[1]

    def score_fn(self, sde: SDE):
        """The exact score as a sampler's score_fn(x [B, ...], t [B]) -> [B, ...] (x flattened to D)."""

        def score_fn(x, t):
            flat = x.reshape(x.shape[0], -1)
            return self.marginal_score(sde, flat, t).reshape(x.shape)

        return score_fn

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n samples [n, D] from p_0."""
        return self.sample_with_labels(key, n)[0]

    def sample_with_labels(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """n samples [n, D] and their component indices [n]."""
        kc, kz = jax.random.split(key)
        comp = jax.random.choice(kc, self.weights.shape[0], (n,), p=self.weights)
        lam, u = self._eig()
        z = jax.random.normal(kz, (n, self.dim))
        scaled = jnp.sqrt(jnp.maximum(lam[comp], 0.0)) * z
        return self.means[comp] + jnp.einsum("ndj,nj->nd", u[comp], scaled), comp

    def marginal_sample(self, key: jax.Array, sde: SDE, t: float, n: int) -> jax.Array:
        """n samples [n, D] from p_t."""
        k0, kz = jax.random.split(key)
        alpha, std = sde.marginal_coeffs(jnp.asarray(t, jnp.float32))
        return alpha * self.sample(k0, n) + std * jax.random.normal(kz, (n, self.dim))

    def mean(self) -> jax.Array:
        return self.weights @ self.means

    def covariance(self) -> jax.Array:
        m = self.mean()
        second = jnp.einsum(
            "k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :]
        )
        return second - jnp.outer(m, m)
