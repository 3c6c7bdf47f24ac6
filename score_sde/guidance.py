"""Class-conditional sampling from score functions: classifier and classifier-free guidance.

Both build a new `score_fn(x, t)`, so any sampler (PC with any predictor/corrector, the ODE, the
inpainters) runs them unchanged, jitted and sharded like unconditional sampling.

- Classifier guidance (Song et al. 2021, sec. 5; Dhariwal & Nichol 2021):
      s_w(x, t) = s(x, t) + w grad_x log p_t(y | x);
  w = 1 is the exact score of p_t(x | y) when s and p_t(y | x) are exact.
  p_t(y | x) is a noise-conditional classifier trained on x_t ~ p_0t(x_t | x_0), t ~ U(eps, T)
  (`get_classifier_loss_fn`).
- Classifier-free guidance (Ho & Salimans 2021): one network conditioned on y or on the null label
  (index num_classes), trained with label dropout (`with_label_dropout`):
      s_w(x, t) = (1 + w) s(x, t, y) - w s(x, t, null);
  w = 0 is the conditional score; w > 0 sharpens p(x | y) towards p(x | y)^(1+w) p(x)^(-w).
- Autoguidance (Karras et al. 2024, EDM2): a model guided by a worse version of itself (smaller or
  less trained), D_w = D_g + w (D - D_g); at fixed t the score is affine in the denoiser, so
      s_w(x, t) = s_g(x, t) + w (s(x, t) - s_g(x, t)),
  optionally only for t in an interval (Kynkaanniemi et al. 2024); w = 1 is the main model.

The exact p_t(y | x) and grad log p_t(x | y) of a Gaussian mixture (y = component), which test these,
are `GaussianMixture.class_log_prob_fn` and `class_score_fn` in score_sde.gmm.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from score_sde.sde import SDE, batch_mul

ScoreFn = Callable[[jax.Array, jax.Array], jax.Array]


# ------------------------------------------------------------------------------ guided scores


def classifier_guided_score_fn(score_fn: ScoreFn, log_prob_fn, scale: float) -> ScoreFn:
    """s(x, t) + scale * grad_x log p_t(y | x); `log_prob_fn(x, t) -> [B]` is log p_t(y_b | x_b)."""
    grad = jax.grad(lambda x, t: jnp.sum(log_prob_fn(x, t)))
    return lambda x, t: score_fn(x, t) + scale * grad(x, t)


def classifier_log_prob_fn(classifier_apply, params, labels: jax.Array):
    """log p_t(y | x) [B] from a classifier's logits: log_softmax(classifier(x, t))[labels]."""

    def log_prob_fn(x, t):
        logits = classifier_apply(params, x, t)
        return jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]

    return log_prob_fn


def cfg_score_fn(cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn, scale: float) -> ScoreFn:
    """(1 + scale) s(x, t, y) - scale s(x, t, null) from the two scores."""
    if scale == 0:
        return cond_score_fn
    return lambda x, t: (1 + scale) * cond_score_fn(x, t) - scale * uncond_score_fn(x, t)


def network_cfg_score_fn(score_apply, params, labels: jax.Array, null_label: int, scale: float):
    """Classifier-free guidance for a class-conditional network's `score_apply(params, x, t, *,
    class_labels)`: labels [B]; null_label = config.model.num_classes."""
    cond = lambda x, t: score_apply(params, x, t, class_labels=labels)
    null = jnp.full_like(labels, null_label)
    return cfg_score_fn(cond, lambda x, t: score_apply(params, x, t, class_labels=null), scale)


def autoguided_score(
    score_fn: ScoreFn,
    guide_score_fn: ScoreFn,
    weight: float,
    interval: tuple[float, float] | None = None,
) -> ScoreFn:
    """Autoguidance: `score_fn(x, t)` of s_w = s_g + weight (s - s_g), x [B, ...], t [B].

    s = score_fn (the main model), s_g = guide_score_fn (the guide: a smaller or earlier model of
    the same data and SDE). With `interval` = (t_lo, t_hi) (the SDE's time) row b is guided only
    where t_lo <= t[b] <= t_hi and is s(x_b, t_b) exactly elsewhere. weight = 1 returns score_fn
    itself (bit for bit); weight > 1 moves away from the guide's errors.
    """
    if not math.isfinite(weight):
        raise ValueError(f"autoguidance weight ({weight}) must be a finite number")
    if interval is not None:
        lo, hi = interval
        if not lo <= hi:
            raise ValueError(
                f"autoguidance interval {interval!r} must be (t_lo, t_hi), t_lo <= t_hi"
            )
    if weight == 1:
        return score_fn

    def guided(x, t):
        s, g = score_fn(x, t), guide_score_fn(x, t)
        out = g + weight * (s - g)
        if interval is None:
            return out
        inside = (t >= interval[0]) & (t <= interval[1])
        return jnp.where(inside.reshape(inside.shape + (1,) * (x.ndim - 1)), out, s)

    return guided


# ------------------------------------------------------------------------------ training


def get_classifier_loss_fn(sde: SDE, classifier_apply, *, train: bool = True, eps: float = 1e-5):
    """Cross-entropy of the classifier at noised data: `loss_fn(params, key, batch) -> scalar`.

    L = E_{t ~ U(eps, T), x_t ~ N(alpha(t) x_0, std(t)^2)} [ -log softmax(f(x_t, t))[y] ];
    batch = {"x": [B, ...] in model space, "label": int [B]}.
    """
    if not 0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")

    def loss_fn(params, key, batch):
        if "label" not in batch:
            raise ValueError("the classifier loss needs labels: batch['label'] int [B]")
        x, y = batch["x"], batch["label"]
        k_t, k_z, k_drop = jax.random.split(key, 3)
        t = jax.random.uniform(k_t, (x.shape[0],), minval=eps, maxval=sde.T)
        mean, std = sde.marginal_prob(x, t)
        xt = mean + batch_mul(std, jax.random.normal(k_z, x.shape, x.dtype))
        logits = classifier_apply(params, xt, t, train=train, rng=k_drop)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))

    return loss_fn


def classifier_accuracy(classifier_apply, params, x, labels, t) -> jax.Array:
    """Fraction of x_t [B, ...] at times t [B] classified as labels [B]."""
    return jnp.mean(jnp.argmax(classifier_apply(params, x, t), -1) == labels)


def drop_labels(key: jax.Array, labels: jax.Array, rate: float, null_label: int) -> jax.Array:
    """Replaces each label by null_label with probability rate (a pure function of key)."""
    return jnp.where(jax.random.bernoulli(key, rate, labels.shape), null_label, labels)


def with_label_dropout(loss_fn, rate: float, null_label: int):
    """Wraps `loss_fn(params, key, batch)` so that batch['label'] is dropped to the null label with
    probability rate, with a key split off the step's key (classifier-free guidance training)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"label dropout rate ({rate}) must lie in [0, 1)")
    if rate == 0.0:
        return loss_fn

    def wrapped(params, key, batch, **extra):
        if "label" not in batch:
            raise ValueError(
                "label dropout needs labels in the batch; use a labelled dataset or set the "
                "dropout rate to 0"
            )
        k_drop, key = jax.random.split(key)
        batch = dict(batch, label=drop_labels(k_drop, batch["label"], rate, null_label))
        return loss_fn(params, key, batch, **extra)

    # the markers the train step reads (takes_step, takes_target) go along
    return functools.update_wrapper(wrapped, loss_fn, assigned=(), updated=("__dict__",))


__all__ = [
    "autoguided_score",
    "cfg_score_fn",
    "classifier_accuracy",
    "classifier_guided_score_fn",
    "classifier_log_prob_fn",
    "drop_labels",
    "get_classifier_loss_fn",
    "network_cfg_score_fn",
    "with_label_dropout",
]
