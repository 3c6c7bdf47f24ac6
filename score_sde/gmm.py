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

    def eig(self) -> tuple[jax.Array, jax.Array]:
        """S_k = U_k diag(lam_k) U_k^T: (lam [K, D], U [K, D, D]). Compute it once and pass it on."""
        return jnp.linalg.eigh(self.covs)

    def component_terms(self, x, alpha, std, eig=None):
        """log N(x; alpha mu_k, alpha^2 S_k + std^2 I) [B, K] and its gradient in x [B, K, D].

        x [B, D]; alpha, std scalars or [B]; eig = self.eig() (decomposed here when None).
        """
        lam, u = self.eig() if eig is None else eig
        alpha = jnp.broadcast_to(alpha, x.shape[:1])[:, None, None]
        std = jnp.broadcast_to(std, x.shape[:1])[:, None, None]
        c = alpha**2 * lam[None] + std**2  # [B, K, D]
        y = jnp.einsum(
            "kdj,bkd->bkj", u, x[:, None, :] - alpha * self.means[None]
        )  # U^T (x - a mu)
        logn = -0.5 * jnp.sum(y**2 / c + jnp.log(c), -1) - 0.5 * self.dim * math.log(2 * math.pi)
        return logn, -jnp.einsum("kdj,bkj->bkd", u, y / c)

    def evaluate(self, x, alpha, std, eig=None):
        """(log p [B], score [B, D], responsibilities [B, K]) of the mixture pushed through
        x -> alpha x + std z (x [B, D]; alpha, std: scalars or [B]; eig as in component_terms)."""
        logn, scores = self.component_terms(x, alpha, std, eig)
        logits = jnp.log(self.weights) + logn
        post = jax.nn.softmax(logits, axis=-1)
        return jax.nn.logsumexp(logits, axis=-1), jnp.einsum("bk,bkd->bd", post, scores), post

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

        eig = self.eig()  # once, outside the traced function

        def score_fn(x, t):
            flat = x.reshape(x.shape[0], -1)
            return self.evaluate(flat, *sde.marginal_coeffs(t), eig)[1].reshape(x.shape)

        return score_fn

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n samples [n, D] from p_0."""
        return self.sample_with_labels(key, n)[0]

    def sample_with_labels(self, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
        """n samples [n, D] and their component indices [n]."""
        kc, kz = jax.random.split(key)
        comp = jax.random.choice(kc, self.weights.shape[0], (n,), p=self.weights)
        lam, u = self.eig()
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
