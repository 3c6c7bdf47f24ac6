"""Train state, optimizer and the data-parallel train steps.

    state = init_state(params, tx, key)
    train_steps = make_train_steps(loss_fn, tx, ema_rate, mesh)
    state, metrics = train_steps(state, batches)  # this process's host batches of k steps

One step (`train_step`):
    key_s    = fold_in(state.key, state.step)          # same randomness on resume
    g        = grad loss_fn(params, key_s, batch)      # loss averaged over the *global* batch
    params  <- params + Adam(clip(g)) with lr * min((step + 1) / warmup, 1)
    ema     <- ema_rate * ema + (1 - ema_rate) * params
    (with config.training.phema_stds, opt_state also holds EDM2's power-function EMAs: phema.track)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from score_sde import parallel, phema
from score_sde.config import OptimConfig

LossFn = Callable[[Any, jax.Array, dict], jax.Array]


class TrainState(NamedTuple):
    """What a checkpoint holds: the step, the parameters and their optimizer state and EMA
    (pytrees of the network's shapes), and the run's key."""

    step: jax.Array  # int32 []
    params: Any
    opt_state: Any
    ema_params: Any
    key: jax.Array  # uint32 raw key data (checkpointable); per-step keys fold_in(key, step)


# train_steps(state, batches) -> (state, metrics): len(batches) steps, metrics with a leading axis k
TrainSteps = Callable[
    [TrainState, list[dict[str, np.ndarray]]], tuple[TrainState, dict[str, jax.Array]]
]


def learning_rate_schedule(optim: OptimConfig) -> optax.Schedule:
    """lr * min((count + 1) / warmup, 1): the original code's warmup (first step is not lr 0)."""
    if optim.warmup == 0:
        return optax.constant_schedule(optim.lr)
    return lambda count: optim.lr * jnp.minimum((count + 1) / optim.warmup, 1.0)


def make_optimizer(
    optim: OptimConfig, phema_stds: tuple[float, ...] = ()
) -> optax.GradientTransformation:
    """Gradient clipping (if grad_clip >= 0), then Adam / AMSGrad / AdamW with the warmup.

    Adam and AMSGrad add weight_decay * params to the gradient (the original's Adam); AdamW
    decouples it. With `phema_stds` (config.training.phema_stds) the optimizer state also tracks
    one power-function EMA per std (score_sde.phema.track; read them with phema.emas).
    """
    lr = learning_rate_schedule(optim)
    if optim.optimizer == "AdamW":
        opt = optax.adamw(lr, b1=optim.beta1, eps=optim.eps, weight_decay=optim.weight_decay)
    else:
        adam = optax.amsgrad if optim.amsgrad else optax.adam
        opt = adam(lr, b1=optim.beta1, eps=optim.eps)
        if optim.weight_decay:
            opt = optax.chain(optax.add_decayed_weights(optim.weight_decay), opt)
    if optim.grad_clip >= 0:
        opt = optax.chain(optax.clip_by_global_norm(optim.grad_clip), opt)
    if phema_stds:
        opt = optax.chain(opt, phema.track(phema_stds))
    return opt


def init_state(params: Any, tx: optax.GradientTransformation, key: jax.Array) -> TrainState:
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


def train_step(
    state: TrainState,
    batch: dict[str, jax.Array],
    *,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    ema_rate: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step; returns (new state, {'loss', 'grad_norm'}). A loss with a curriculum
    (`loss_fn.takes_step`: consistency training) also gets the step, and one with a target
    network (`loss_fn.takes_target`: consistency distillation) the EMA parameters."""
    extra = {"step": state.step} if getattr(loss_fn, "takes_step", False) else {}
    if getattr(loss_fn, "takes_target", False):
        extra["target"] = state.ema_params
    loss, grads = jax.value_and_grad(loss_fn)(state.params, step_key(state), batch, **extra)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = jax.tree.map(lambda e, p: ema_rate * e + (1.0 - ema_rate) * p, state.ema_params, params)
    new = TrainState(state.step + 1, params, opt_state, ema, state.key)
    return new, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def scan_by_default() -> bool:
    """Whether k steps per dispatch run as one `lax.scan` (accelerators) or as k dispatches of
    one jitted step (CPU).

    XLA:CPU canonicalizes convolution dimension orders only in the top-level computation: inside
    a scan's loop body the backward convolutions keep the transposed orders autodiff gives them,
    fall off the Eigen fast path and run about 10x slower (benchmarks/dispatch.py measures it).
    """
    return jax.default_backend() != "cpu"


def make_train_steps(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    ema_rate: float,
    mesh: Mesh,
    *,
    scan: bool | None = None,
    state_sharding: Any = None,
) -> TrainSteps:
    """`train_steps(state, batches) -> (state, metrics)` for k steps per call.

    `batches` is a list of k per-step host batches (this process's rows of each global batch);
    `metrics` values have a leading axis k. With `scan` (default: `scan_by_default()`) the k steps
    are one jit(lax.scan) over batches stacked [k, B, ...]; otherwise k calls of one jitted step.
    Both give the same states. The state is donated: do not reuse the one passed in. It stays in
    `state_sharding` (a tree of NamedShardings, `parallel.state_sharding`; default replicated).
    """
    rep = parallel.replicated(mesh)
    state_in = rep if state_sharding is None else state_sharding
    body = lambda s, b: train_step(s, b, loss_fn=loss_fn, tx=tx, ema_rate=ema_rate)
    if scan_by_default() if scan is None else scan:
        many = jax.jit(
            lambda state, stacked: jax.lax.scan(body, state, stacked),
            in_shardings=(state_in, parallel.batch_sharding(mesh, batch_axis=1)),
            out_shardings=(state_in, rep),
            donate_argnums=0,
        )

        def scanned(state, batches):
            stacked = {k: np.stack([b[k] for b in batches]) for k in batches[0]}
            return many(state, parallel.global_batch(stacked, mesh, batch_axis=1))

        return scanned

    one = jax.jit(
        body,
        in_shardings=(state_in, parallel.batch_sharding(mesh)),
        out_shardings=(state_in, rep),
        donate_argnums=0,
    )

    def looped(state, batches):
        metrics = []
        for b in batches:
            state, m = one(state, parallel.global_batch(b, mesh))
            metrics.append(m)
        return state, jax.tree.map(lambda *v: jnp.stack(v), *metrics)

    return looped


INIT_OPTIONS = {"xla_backend_optimization_level": 1}


def make_init_state(
    init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation, mesh: Mesh
) -> Callable[[jax.Array], TrainState]:
    """jit(key -> TrainState) with every leaf created already in its sharding on the mesh
    (`parallel.state_sharding`: replicated on a ('data',) mesh).

    `init_params(key) -> params`; the state's own key is split off the same seed key.
    """

    def init(key):
        k_params, k_train = jax.random.split(key)
        return init_state(init_params(k_params), tx, k_train)

    # Compiled at LLVM level 1: the init runs once, and its ~one random-number kernel per
    # parameter compiles in about half the time (the same bits as the default level, measured on
    # the DDPM++ and NCSN inits; integer hashing and one scale-and-shift per value).
    shardings = parallel.state_sharding(jax.eval_shape(init, jax.random.key(0)), mesh)
    return jax.jit(init, out_shardings=shardings, compiler_options=INIT_OPTIONS)


def state_like(
    init_params: Callable[[jax.Array], Any], tx: optax.GradientTransformation, mesh: Mesh
) -> TrainState:
    """The abstract TrainState (ShapeDtypeStructs in `parallel.state_sharding` on `mesh`): what
    checkpoints restore into."""
    abstract = jax.eval_shape(lambda k: init_state(init_params(k), tx, k), jax.random.key(0))
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        abstract,
        parallel.state_sharding(abstract, mesh),
    )


def make_eval_loss(loss_fn: LossFn, mesh: Mesh):
    """jit((params, key, batch) -> scalar) with the batch sharded over the mesh (the params in
    the sharding they come in)."""
    rep = parallel.replicated(mesh)
    return jax.jit(
        loss_fn, in_shardings=(None, rep, parallel.batch_sharding(mesh)), out_shardings=rep
    )
