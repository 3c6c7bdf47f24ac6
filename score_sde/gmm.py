"""Gaussian mixtures: the closed-form oracle of score-based models.

Under any linear SDE with kernel p_0t(x_t | x_0) = N(alpha(t) x_0, std(t)^2 I), a mixture
p_0 = sum_k w_k N(mu_k, S_k) stays a mixture with the same weights:
    p_t = sum_k w_k N(alpha mu_k, alpha^2 S_k + std^2 I),
so its score, log-density and samples are exact at every t. So are its class posterior
p_t(k | x) and class scores (the exact classifier and conditional model of guidance), and, for known
coordinates x_o = y of an orthogonal view u = x @ Q, the conditional p(u_h | u_o = y), again a
mixture (the exact answer of inpainting and colorization). Tests of samplers, likelihoods, guidance
and controllable generation compare against these; the known-density toy dataset uses them too.

Shapes: x is [B, D]; t is [B]; K components.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
        """The exact score grad log p_t(x) as a sampler's score_fn(x [B, ...], t [B]) -> [B, ...]
        (x flattened to D)."""

        eig = self.eig()  # once, outside the traced function

        def score_fn(x, t):
            flat = x.reshape(x.shape[0], -1)
            return self.evaluate(flat, *sde.marginal_coeffs(t), eig)[1].reshape(x.shape)

        return score_fn

    def velocity_fn(self, sde: SDE):
        """The exact velocity E[alpha' x_0 + std' z | x_t = x] of x_t = alpha x_0 + std z as
        `velocity_fn(x [B, ...], t [B])` (x flattened to D): the flow-matching target field.

        Per component, with C = alpha^2 S + std^2 I: E[z | x, k] = std C^-1 (x - alpha mu) and
        E[x_0 | x, k] = mu + alpha S C^-1 (x - alpha mu), weighted by p_t(k | x); no division
        by alpha, so it is exact up to t = 1 of a flow path.
        """
        lam, u = eig = self.eig()

        def velocity_fn(x, t):
            flat = x.reshape(x.shape[0], -1)
            alpha, std = sde.marginal_coeffs(t)
            d_alpha, d_std = sde.coeff_derivatives(t)
            logn, scores = self.component_terms(flat, alpha, std, eig)  # scores = -C^-1 (x - a mu)
            post = jax.nn.softmax(jnp.log(self.weights) + logn, axis=-1)
            z = -std[:, None, None] * scores
            s_scores = jnp.einsum("kdj,kj,kej,bke->bkd", u, lam, u, scores)  # S_k scores_k
            x0 = self.means[None] - alpha[:, None, None] * s_scores
            v = d_alpha[:, None, None] * x0 + d_std[:, None, None] * z
            return jnp.einsum("bk,bkd->bd", post, v).reshape(x.shape)

        return velocity_fn

    def denoiser_fn(self):
        """The exact denoiser D(x~ [B, ...], sigma [B]) = E[x_0 | x_0 + sigma z = x~]
        = x~ + sigma^2 grad log (p_0 * N(0, sigma^2 I))(x~) (Tweedie; x flattened to D)."""

        eig = self.eig()

        def denoiser(x, sigma):
            flat = x.reshape(x.shape[0], -1)
            score = self.evaluate(flat, 1.0, sigma, eig)[1]
            return (flat + sigma[:, None] ** 2 * score).reshape(x.shape)

        return denoiser

    def _class_terms_fn(self, sde: SDE):
        """terms(x [B, ...], t [B]) -> (log p_t(k | x) [B, K], grad log p_t(x | k) [B, K, D])."""

        eig = self.eig()  # once, outside the traced function

        def terms(x, t):
            log_n, scores = self.component_terms(
                x.reshape(x.shape[0], -1), *sde.marginal_coeffs(t), eig
            )
            return jax.nn.log_softmax(jnp.log(self.weights) + log_n, axis=-1), scores

        return terms

    def class_log_prob_fn(self, sde: SDE, labels: jax.Array):
        """The exact classifier log p_t(y = labels | x) [B] as `log_prob_fn(x [B, ...], t [B])`
        (labels: int [B] component indices; x flattened to D)."""
        terms = self._class_terms_fn(sde)

        def log_prob_fn(x, t):
            return jnp.take_along_axis(terms(x, t)[0], labels[:, None], axis=-1)[:, 0]

        return log_prob_fn

    def class_score_fn(self, sde: SDE, labels: jax.Array):
        """The exact class score grad log p_t(x | y = labels) [B, ...] as `score_fn(x, t)`: component
        y's Gaussian N(alpha mu_y, alpha^2 S_y + std^2 I) at time t (labels: int [B])."""
        terms = self._class_terms_fn(sde)

        def score_fn(x, t):
            scores = terms(x, t)[1]
            return jnp.take_along_axis(scores, labels[:, None, None], axis=1)[:, 0].reshape(x.shape)

        return score_fn

    def transformed(self, q) -> GaussianMixture:
        """The mixture of u = x @ q for x ~ self (q [D, D] orthogonal): means mu_k q, covs q^T S_k q."""
        q = jnp.asarray(q, self.means.dtype)
        if q.shape != (self.dim, self.dim):
            raise ValueError(f"q must be [D, D] = [{self.dim}, {self.dim}], got shape {q.shape}")
        covs = jnp.einsum("ia,kij,jb->kab", q, self.covs, q)
        return GaussianMixture(self.weights, self.means @ q, covs)

    def conditional(self, known, y) -> GaussianMixture:
        """p(x_h | x_o = y) for x ~ self: a mixture over the hidden coordinates h = ~known.

        known: bool [D] (static); y [D_o]. Component k: N(mu_h + S_ho S_oo^-1 (y - mu_o),
        S_hh - S_ho S_oo^-1 S_oh), weight proportional to w_k N(y; mu_o, S_oo).
        """
        known = np.asarray(known, bool)
        if known.shape != (self.dim,):
            raise ValueError(f"known must be a bool mask [D] = [{self.dim}], got {known.shape}")
        o, h = np.flatnonzero(known), np.flatnonzero(~known)
        y = jnp.asarray(y, self.means.dtype)
        if y.shape != (len(o),):
            raise ValueError(
                f"y must hold the {len(o)} known coordinates ([D_o] = [{len(o)}]), got {y.shape}"
            )
        s_oo = self.covs[:, o][:, :, o]
        s_ho = self.covs[:, h][:, :, o]
        s_hh = self.covs[:, h][:, :, h]
        diff = y[None] - self.means[:, o]  # [K, D_o]
        gain = jnp.linalg.solve(s_oo, jnp.swapaxes(s_ho, 1, 2))  # S_oo^-1 S_oh  [K, D_o, D_h]
        means = self.means[:, h] + jnp.einsum("koh,ko->kh", gain, diff)
        covs = s_hh - jnp.einsum("kho,kog->khg", s_ho, gain)
        covs = 0.5 * (covs + jnp.swapaxes(covs, 1, 2))
        marginal = GaussianMixture(self.weights, self.means[:, o], s_oo)
        log_n = marginal.component_terms(y[None], 1.0, 0.0)[0][0]  # log N(y; mu_o, S_oo) [K]
        return GaussianMixture(jax.nn.softmax(jnp.log(self.weights) + log_n), means, covs)

    def conditional_score_fn(self, sde: SDE, known, y, channel_matrix=None):
        """The exact score of p_t(u_h | u_o = y) as `score_fn(x [B, ..., C], t [B])`, for the
        conditional samplers of score_sde.controllable.

        u = x @ Q is the view in which `known` (bool [D]) and y [D_o] are given (x flattened to D):
        Q = I when channel_matrix is None, else channel_matrix [C, C] (orthogonal, e.g.
        controllable.COLOR_MATRIX) on the last axis, Q = kron(I_{D/C}, channel_matrix). self is
        the mixture of x. The score is Q [0 on known; grad_{u_h} log p_t(u_h | y)].
        """
        known = np.asarray(known, bool)
        h = np.flatnonzero(~known)
        gmm, m = self, None
        if channel_matrix is not None:
            m = np.asarray(channel_matrix, np.float32)
            c = m.shape[0]
            if m.shape != (c, c) or self.dim % c:
                raise ValueError(
                    f"channel_matrix must be [C, C] with C dividing D = {self.dim}, got shape "
                    f"{m.shape}"
                )
            gmm = self.transformed(np.kron(np.eye(self.dim // c, dtype=np.float32), m))
        cond_score = gmm.conditional(known, y).score_fn(sde)  # eig once, outside the traced fn

        def score_fn(x, t):
            u = x if m is None else jnp.einsum("...i,ij->...j", x, jnp.asarray(m, x.dtype))
            u = u.reshape(x.shape[0], -1)
            s_u = jnp.zeros_like(u).at[:, h].set(cond_score(u[:, h], t)).reshape(x.shape)
            return s_u if m is None else jnp.einsum("...j,ij->...i", s_u, jnp.asarray(m, x.dtype))

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
