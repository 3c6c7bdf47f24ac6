"""Eval mode: per checkpoint, eval loss, likelihood on a split, samples; one JSON each.

Checkpoints: snapshot steps in [config.eval.begin_ckpt, config.eval.end_ckpt] (end < 0: no upper
bound), or the newest checkpoint of either kind when begin_ckpt < 0. Results go to
`<workdir>/eval/<step>/results.json` with samples as `<method>.npz` / `<method>.png` beside it.

Likelihood: log p(x) through the probability-flow ODE (score_sde.likelihood) with EMA params.
Image data are dequantized uniformly and reported in bits/dim; 2-D toys in nats per example, next
to the best single-Gaussian fit (and the true density where one is known).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import likelihood, parallel, toy_data
from score_sde.metrics_log import MetricsLogger
from score_sde.modes import common
from score_sde.modes.config import RunConfig


def checkpoint_steps(cfg: RunConfig, ckpts) -> list[int]:
    e = cfg.eval
    if e.begin_ckpt < 0:
        latest = ckpts.latest_step()
        return [] if latest is None else [latest]
    return [
        s
        for s in ckpts.snapshot_steps()
        if s >= e.begin_ckpt and (e.end_ckpt < 0 or s <= e.end_ckpt)
    ]


def evaluate(cfg: RunConfig, workdir: str, *, mesh: Mesh | None = None, stream=None) -> list[dict]:
    """Evaluates the configured checkpoints of `workdir`; one results dict per checkpoint."""
    workdir = common.prepare_workdir(workdir)
    exp = common.build(cfg, mesh)
    main = common.is_main_process()
    log = MetricsLogger(workdir, enabled=main, stream=stream)
    ckpts = common.open_checkpoints(workdir)
    steps = checkpoint_steps(cfg, ckpts)
    if not steps:
        raise ValueError(
            f"no checkpoint to evaluate in {workdir} "
            f"(config.eval.begin_ckpt={cfg.eval.begin_ckpt}, "
            f"end_ckpt={cfg.eval.end_ckpt}, snapshots: {ckpts.snapshot_steps()}); train first with "
            f"--mode=train --workdir={workdir}, or widen the range"
        )
    all_results = []
    like = exp.state_like()
    for step in steps:
        state = ckpts.restore(like, step)
        results = evaluate_params(exp, state.ema_params, workdir, step, log)
        all_results.append(results)
    ckpts.close()
    log.close()
    return all_results


def evaluate_params(exp: common.Experiment, params, workdir: str, step: int, log: MetricsLogger):
    cfg, e = exp.cfg, exp.cfg.eval
    out = os.path.join(workdir, "eval", str(step))
    if common.is_main_process():
        os.makedirs(out, exist_ok=True)
    results: dict = {"step": int(step)}
    if e.enable_loss:
        results["eval_loss"] = _eval_loss(exp, params, step)
        log.info(f"checkpoint {step}: eval loss {results['eval_loss']:.5g}")
    if e.enable_bpd:
        lik = _likelihood(exp, params)
        results.update(lik.pop("results"))
        for k, v in results.items():
            if k.startswith(("test_", "bpd", "gaussian", "true")):
                log.info(f"checkpoint {step}: {k} {v:.5g}")
    if e.enable_sampling:
        for method in e.samplers or (cfg.sampling.method,):
            key = jax.random.fold_in(jax.random.fold_in(exp.key(common.KEY_SAMPLES), step), 1)
            samples, nfe = exp.draw_samples(
                params, key, e.num_samples, method, cfg.sampling.batch_size
            )
            results[f"nfe_{method}"] = nfe
            if common.is_main_process():
                common.save_samples(os.path.join(out, method), samples, cfg)
            log.info(
                f"checkpoint {step}: {len(samples)} {method} samples ({nfe} score evaluations) "
                f"-> {os.path.join(out, method)}.png"
            )
            if cfg.is_toy:
                results[f"samples_{method}_mean"] = np.asarray(samples.mean(0)).tolist()
        if cfg.is_toy:
            _toy_scatter(exp, params, out, e.num_samples)
    log.write(step, {k: v for k, v in results.items() if isinstance(v, float)}, prefix="eval/")
    if common.is_main_process():
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def _eval_loss(exp: common.Experiment, params, step: int, num_batches: int = 8) -> float:
    from score_sde import train

    b = exp.cfg.eval.batch_size
    n_dev = exp.mesh.devices.size
    b = max(n_dev, b // n_dev * n_dev)
    ds = common.get_dataset(exp.cfg, "test", global_batch=b, seed=exp.cfg.seed + 1)
    loss = train.make_eval_loss(exp.loss_fn(train=False), exp.mesh)
    values = []
    for i in range(num_batches):
        batch = parallel.global_batch(ds.batch(i), exp.mesh)
        key = jax.random.fold_in(jax.random.fold_in(exp.key(common.KEY_EVAL_LOSS), step), i)
        values.append(float(parallel.to_host(loss(params, key, batch))))
    return float(np.mean(values))


def _likelihood(exp: common.Experiment, params) -> dict:
    """Mean log-likelihood over (up to config.eval.num_bpd_examples of) the bpd split."""
    from score_sde import datasets

    cfg, e = exp.cfg, exp.cfg.eval
    n_dev = exp.mesh.devices.size
    b = max(n_dev, e.batch_size // n_dev * n_dev)
    image = len(exp.shape) == 3
    kw = {"uniform_dequantization": True} if image else {}
    ds = datasets.get_dataset(
        cfg.raw,
        e.bpd_dataset,
        batch_size=b // jax.process_count(),
        seed=cfg.seed + 1,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        **kw,
    )
    lik_fn = likelihood.get_likelihood_fn(
        exp.sde, hutchinson_type=e.hutchinson_type, rtol=e.rtol, atol=e.atol
    )
    score_apply = exp.score_apply
    rep = parallel.replicated(exp.mesh)
    sharded = parallel.batch_sharding(exp.mesh)

    @jax.jit
    def logp_fn(params, key, x):
        x = jax.lax.with_sharding_constraint(x, sharded)
        logp, _, nfe = lik_fn(key, lambda y, t: score_apply(params, y, t), x)
        return jax.lax.with_sharding_constraint(logp, rep), nfe

    logps, xs, nfes = [], [], []
    for i, batch in enumerate(ds.epoch(b // jax.process_count())):
        gb = parallel.global_batch(batch, exp.mesh)
        key = jax.random.fold_in(exp.key(common.KEY_LIKELIHOOD), i)
        logp, nfe = logp_fn(params, key, gb["x"])
        mask = _replicated_host(gb["mask"], exp.mesh)
        logps.append(parallel.to_host(logp)[mask])
        if not image:
            xs.append(_replicated_host(gb["x"], exp.mesh)[mask])
        nfes.append(int(parallel.to_host(nfe)))
        if e.num_bpd_examples > 0 and sum(len(v) for v in logps) >= e.num_bpd_examples:
            break
    logp = np.concatenate(logps)
    if e.num_bpd_examples > 0:
        logp = logp[: e.num_bpd_examples]
    results = {"likelihood_examples": int(len(logp)), "likelihood_nfe_mean": float(np.mean(nfes))}
    out = {"results": results, "x": None}
    if image:
        dims = int(np.prod(exp.shape))
        bpd = likelihood.bits_per_dim(jnp.asarray(logp), dims, centered=cfg.centered)
        results["bpd"] = float(np.mean(np.asarray(bpd)))
        return out
    x = np.concatenate(xs)[: len(logp)]
    results["test_log_likelihood"] = float(np.mean(logp))
    train_ds = datasets.get_dataset(cfg.raw, "train", batch_size=10_000, seed=cfg.seed + 2)
    fit = train_ds.batch(0)["x"]
    results["gaussian_fit_log_likelihood"] = float(
        toy_data.gaussian_fit_log_likelihood(jnp.asarray(fit), jnp.asarray(x))
    )
    density = None
    if cfg.is_toy and cfg.dataset.split("/", 1)[1] in ("gmm", "eight_gaussians"):
        density = toy_data.toy_density(cfg.dataset.split("/", 1)[1])
    if density is not None:
        results["true_log_likelihood"] = float(
            np.mean(np.asarray(density.log_prob(jnp.asarray(x))))
        )
    out["x"] = x
    return out


def _replicated_host(x, mesh) -> np.ndarray:
    """A batch-sharded global array -> the full numpy array on every process."""
    return parallel.to_host(jax.jit(lambda v: v, out_shardings=parallel.replicated(mesh))(x))


def _toy_scatter(exp: common.Experiment, params, out: str, num: int) -> None:
    """eval/<step>/scatter.png: test data | PC samples | ODE samples (whichever were drawn)."""
    from score_sde import datasets

    if not common.is_main_process():
        return
    data = datasets.get_dataset(exp.cfg.raw, "test", batch_size=num, seed=exp.cfg.seed + 3).batch(
        0
    )["x"]
    panels = {"data": np.asarray(data)}
    for method in exp.cfg.eval.samplers or (exp.cfg.sampling.method,):
        path = os.path.join(out, method + ".npz")
        if os.path.exists(path):
            panels[method] = np.load(path)["samples"]
    common.save_scatter(os.path.join(out, "scatter.png"), panels)
