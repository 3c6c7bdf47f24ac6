"""Train state, optimizer and the scanned, data-parallel train step.

    state = init_state(params, tx, key)
    train_steps = make_train_steps(loss_fn, tx, ema_rate, mesh)
    state, metrics = train_steps(state, batches)  # batches [k, B, ...]: k steps per call

One step (`train_step`):
    key_s    = fold_in(state.key, state.step)          # same randomness on resume
    g        = grad loss_fn(params, key_s, batch)      # loss averaged over the *global* batch
    params  <- params + Adam(clip(g)) with lr * min((step + 1) / warmup, 1)
    ema     <- ema_rate * ema + (1 - ema_rate) * params
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from score_sde import parallel

LossFn = Callable[[Any, jax.Array, dict], jax.Array]


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """config.optim: Adam(W), linear warmup, global-norm gradient clipping (grad_clip < 0: off)."""

    optimizer: str = "Adam"
    lr: float = 2e-4
    beta1: float = 0.9
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup: int = 5000
    grad_clip: float = 1.0

    def __post_init__(self):
        if self.optimizer not in ("Adam", "AdamW"):
            raise ValueError(
                f"config.optim.optimizer ({self.optimizer!r}) is not supported; "
                "use 'Adam' or 'AdamW'"
            )
        if self.lr <= 0:
            raise ValueError(f"config.optim.lr ({self.lr}) must be > 0")
        if self.warmup < 0:
            raise ValueError(f"config.optim.warmup ({self.warmup}) must be >= 0")


class TrainState(NamedTuple):
    step: jax.Array  # int32 []
    params: Any
    opt_state: Any
    ema_params: Any
    key: jax.Array  # uint32 raw key data (checkpointable); per-step keys fold_in(key, step)


def learning_rate_schedule(optim: OptimConfig) -> optax.Schedule:
    """lr * min((count + 1) / warmup, 1): the original code's warmup (first step is not lr 0)."""
    if optim.warmup == 0:
        return optax.constant_schedule(optim.lr)
    return lambda count: optim.lr * jnp.minimum((count + 1) / optim.warmup, 1.0)


def make_optimizer(optim: OptimConfig) -> optax.GradientTransformation:
    """Gradient clipping (if grad_clip >= 0) then Adam/AdamW with the warmup schedule."""
    lr = learning_rate_schedule(optim)
    if optim.optimizer == "AdamW":
        opt = optax.adamw(lr, b1=optim.beta1, eps=optim.eps, weight_decay=optim.weight_decay)
    else:
        opt = optax.adam(lr, b1=optim.beta1, eps=optim.eps)
        if optim.weight_decay:
            opt = optax.chain(optax.add_decayed_weights(optim.weight_decay), opt)
    if optim.grad_clip >= 0:
        opt = optax.chain(optax.clip_by_global_norm(optim.grad_clip), opt)
    return opt


def init_state(params, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
    """A fresh state at step 0; EMA starts at the initial params."""
    key_data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.array, params),
        key=key_data,
    )


def step_key(state: TrainState) -> jax.Array:
    return jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)


def train_step(state: TrainState, batch, *, loss_fn: LossFn, tx, ema_rate: float):
    """One optimizer step; returns (new state, {'loss', 'grad_norm'})."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, step_key(state), batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: ema_rate * e + (1.0 - ema_rate) * p, state.ema_params, params)
    new = TrainState(state.step + 1, params, opt_state, ema, state.key)
    return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def make_train_steps(loss_fn: LossFn, tx, ema_rate: float, mesh: Mesh):
    """jit(scan(train_step)) over stacked batches [k, B, ...] sharded along B; state donated.

    Returns train_steps(state, batches) -> (state, metrics with leading axis k).
    """

    def many(state, batches):
        body = lambda s, b: train_step(s, b, loss_fn=loss_fn, tx=tx, ema_rate=ema_rate)
        return jax.lax.scan(body, state, batches)

    rep = parallel.replicated(mesh)
    return jax.jit(
        many,
        in_shardings=(rep, parallel.batch_sharding(mesh, batch_axis=1)),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )


def make_init_state(init_params: Callable[[jax.Array], Any], tx, mesh: Mesh):
    """jit(key -> TrainState) with every leaf created already replicated on the mesh.

    `init_params(key) -> params`; the state's own key is split off the same seed key.
    """

    def init(key):
        k_params, k_train = jax.random.split(key)
        return init_state(init_params(k_params), tx, k_train)

    return jax.jit(init, out_shardings=parallel.replicated(mesh))


def make_eval_loss(loss_fn: LossFn, mesh: Mesh):
    """jit((params, key, batch) -> scalar) with the batch sharded over the mesh."""
    rep = parallel.replicated(mesh)
    return jax.jit(
        loss_fn, in_shardings=(rep, rep, parallel.batch_sharding(mesh)), out_shardings=rep
    )
