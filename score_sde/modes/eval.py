"""Eval mode: per checkpoint, eval loss, likelihood on a split, samples; one JSON each.

Checkpoints: the snapshots numbered begin_ckpt..end_ckpt (config.eval; end < 0: no upper bound),
snapshot k being step k * config.training.snapshot_freq as in the original code (the final one,
at n_iters, counts as n_iters // snapshot_freq), or the newest checkpoint of either kind when
begin_ckpt < 0. Results go to
`<workdir>/eval/<step>/results.json` with samples as `<method>.npz` / `<method>.png` beside it.

Likelihood: log p(x) through the probability-flow ODE (score_sde.likelihood) with EMA params.
Image data: bits/dim over the whole `config.eval.bpd_dataset` split (the last batch padded and
masked, never dropped), `config.eval.num_repeats` uniform dequantization draws. 2-D toys: nats per
example, next to the best single-Gaussian fit (and the true density where one is known).

Sample quality (image data, `enable_sampling` and `enable_fid`): `num_samples` samples per sampler
drawn on every device of every host, their Inception activations gathered batch by batch, then
FID / IS / KID against `config.eval.fid_stats` (`fid_<method>`, `inception_score_<method>`,
`kid_<method>` in results.json). The weights and statistics are checked before anything runs.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import datasets, experiment, image_io, likelihood, parallel, toy_data
from score_sde import workdir as wd
from score_sde.checkpoint import Checkpoints
from score_sde.config import Config
from score_sde.evaluation import inception as inception_lib
from score_sde.metrics_log import MetricsLogger


def checkpoint_steps(cfg: Config, ckpts) -> list[int]:
    """Steps to evaluate: snapshot k = step // snapshot_freq for k in [begin_ckpt, end_ckpt] (the
    later step where two share a number), or [the newest step] when begin_ckpt < 0."""
    e = cfg.eval
    if e.begin_ckpt < 0:
        latest = ckpts.latest_step()
        return [] if latest is None else [latest]
    by_number = {s // cfg.training.snapshot_freq: s for s in sorted(ckpts.snapshot_steps())}
    return [
        s
        for k, s in sorted(by_number.items())
        if k >= e.begin_ckpt and (e.end_ckpt < 0 or k <= e.end_ckpt)
    ]


def evaluate(cfg: Config, workdir: str, *, mesh: Mesh | None = None, stream=None) -> list[dict]:
    """Evaluates the configured checkpoints of `workdir`; one results dict per checkpoint."""
    workdir = wd.prepare(workdir)
    exp = experiment.build(cfg, mesh)
    sample_quality = fid_inputs(cfg, exp.shape)  # fails early when weights or stats are missing
    with Checkpoints(workdir, read_only=True) as ckpts:
        steps = checkpoint_steps(cfg, ckpts)
        if not steps:
            raise ValueError(
                f"no checkpoint to evaluate in {workdir} "
                f"(config.eval.begin_ckpt={cfg.eval.begin_ckpt}, "
                f"end_ckpt={cfg.eval.end_ckpt}: snapshot numbers, step // snapshot_freq "
                f"({cfg.training.snapshot_freq}); snapshot steps: {ckpts.snapshot_steps()}); "
                f"train first with --mode=train --workdir={workdir}, widen the range, or pass "
                "--config.eval.begin_ckpt=-1 for the newest checkpoint"
            )
        inception_fn = None
        if sample_quality is not None:
            from score_sde.evaluation import evaluator

            inception_fn = evaluator.get_inception_fn(mesh=exp.mesh, weights=sample_quality[0])
        all_results = []
        like = exp.state_like()
        with MetricsLogger(workdir, enabled=parallel.is_main_process(), stream=stream) as log:
            for step in steps:
                state = ckpts.restore(like, step)
                results = evaluate_params(
                    exp, state.ema_params, workdir, step, log, inception_fn=inception_fn
                )
                all_results.append(results)
    return all_results


def default_fid_stats(data) -> str:
    """assets/stats/<dataset>[_<category>]_<image_size>_train_stats.npz for config.data."""
    parts = [data.dataset.lower().replace("/", "_")]
    if data.category:
        parts.append(data.category)
    if data.image_size:
        parts.append(str(data.image_size))
    return os.path.join("assets", "stats", "_".join(parts) + "_train_stats.npz")


def fid_inputs(cfg: Config, shape: tuple[int, ...]) -> tuple[str, str] | None:
    """(Inception weights path, reference statistics path) when eval computes FID/IS/KID, else
    None (2-D data, sampling or FID off). Raises ValueError saying how to get a missing file."""
    e = cfg.eval
    if len(shape) != 3 or not (e.enable_sampling and e.enable_fid):
        return None
    weights = inception_lib.weights_path(e.inception_weights)
    if not os.path.isfile(weights):
        raise ValueError(
            f"FID/IS/KID need the Inception weights, not found at {weights}: download "
            f"{inception_lib.WEIGHTS_URL} and convert it once with `python -m "
            f"score_sde.evaluation.inception pt_inception-2015-12-05-6726825d.pth --out "
            f"{weights}` (needs torch), or point config.eval.inception_weights (or "
            "$SCORE_SDE_INCEPTION_WEIGHTS) at the converted .npz; --config.eval.enable_fid=False "
            "skips sample quality"
        )
    stats = os.path.expanduser(e.fid_stats or default_fid_stats(cfg.data))
    if not os.path.isfile(stats):
        raise ValueError(
            f"FID/KID need reference statistics of the data, not found at {stats}: make them "
            "once with `python -m score_sde.evaluation.reference_stats --config=<this run's "
            f"config file> --split=train --out={stats}`, or set config.eval.fid_stats to a "
            "pytorch-fid .npz (mu, sigma); --config.eval.enable_fid=False skips sample quality"
        )
    return weights, stats


def sample_quality_metrics(
    exp: experiment.Experiment, batches, num: int, inception_fn, stats_path: str, keep: int = 0
) -> tuple[dict, np.ndarray]:
    """FID / IS / KID of the first `num` rows of `batches` (global model-space image arrays
    [b, H, W, C], e.g. `exp.sample_batches`), and the first `keep` rows as uint8 images."""
    from score_sde.evaluation import evaluator

    acc, kept, seen = evaluator.FeatureAccumulator(), [], 0
    for x in batches:
        valid = min(len(x), num - seen)
        if valid <= 0:
            break
        images = datasets.to_images(x, exp.cfg.data)
        acc.add(inception_fn(images), mask=np.arange(len(x)) < valid)
        if seen < keep:
            rows = min(valid, keep - seen)
            kept.append(np.round(parallel.to_host(images)[:rows] * 255.0).astype(np.uint8))
        seen += valid
    metrics = evaluator.compute_metrics(acc, stats_path, num_samples=num)
    return metrics, (np.concatenate(kept) if kept else np.zeros((0, *exp.shape), np.uint8))


def evaluate_params(
    exp: experiment.Experiment,
    params,
    workdir: str,
    step: int,
    log: MetricsLogger,
    *,
    inception_fn=None,
):
    cfg, e = exp.cfg, exp.cfg.eval
    out = os.path.join(workdir, "eval", str(step))
    if parallel.is_main_process():
        os.makedirs(out, exist_ok=True)
    results: dict = {"step": int(step)}
    if e.enable_loss:
        results["eval_loss"] = _eval_loss(exp, params, step)
        log.info(f"checkpoint {step}: eval loss {results['eval_loss']:.5g}")
    if e.enable_bpd:
        lik = _likelihood(exp, params)
        results.update(lik.pop("results"))
        for k, v in results.items():
            if k.startswith(("test_", "bpd", "gaussian", "true")) and isinstance(v, float):
                log.info(f"checkpoint {step}: {k} {v:.5g}")
    if e.enable_sampling:
        for method in e.samplers or (cfg.sampling.method,):
            key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), step), 1)
            metrics, samples = _samples(exp, params, key, method, out, log, step, inception_fn)
            results.update(metrics)
            if cfg.data.is_toy:
                results[f"samples_{method}_mean"] = np.asarray(samples.mean(0)).tolist()
        if cfg.data.is_toy:
            _toy_scatter(exp, params, out, e.num_samples)
    log.write(step, {k: v for k, v in results.items() if isinstance(v, float)}, prefix="eval/")
    if parallel.is_main_process():
        wd.write_json(os.path.join(out, "results.json"), results)
    return results


# Image samples kept in <method>.npz (as uint8) when FID runs over many more.
MAX_SAVED_SAMPLES = 10_000


def _samples(exp, params, key, method: str, out: str, log, step: int, inception_fn):
    """Draws config.eval.num_samples samples with `method`; writes <out>/<method>.npz and .png;
    with `inception_fn` (image data) also FID / IS / KID against the reference statistics.
    Returns ({metric: value}, the samples kept on the host)."""
    cfg, e = exp.cfg, exp.cfg.eval
    batches = exp.sample_batches(params, key, e.num_samples, method)
    nfe = [0]

    def xs():
        for x, n in batches:
            nfe[0] = n
            yield x

    results = {}
    if inception_fn is None:
        samples = np.concatenate([parallel.to_host(x) for x in xs()])[: e.num_samples]
    else:
        stats = fid_inputs(cfg, exp.shape)[1]
        metrics, samples = sample_quality_metrics(
            exp, xs(), e.num_samples, inception_fn, stats, keep=MAX_SAVED_SAMPLES
        )
        for k, v in metrics.items():
            results[f"{k}_{method}"] = v
        log.info(
            f"checkpoint {step}: {method} samples: FID {metrics['fid']:.4g}, IS "
            f"{metrics['inception_score']:.4g}"
            + (f", KID {metrics['kid']:.4g}" if "kid" in metrics else "")
            + f" ({metrics['num_samples']} samples vs {stats})"
        )
    results[f"nfe_{method}"] = int(parallel.to_host(nfe[0]))
    if parallel.is_main_process():
        image_io.save_samples(os.path.join(out, method), exp.saved_samples(samples))
    log.info(
        f"checkpoint {step}: {e.num_samples} {method} samples ({nfe[0]} score evaluations) "
        f"-> {os.path.join(out, method)}.png"
    )
    return results, samples


def _eval_loss(exp: experiment.Experiment, params, step: int, num_batches: int = 8) -> float:
    from score_sde import train

    b = exp.cfg.eval.batch_size
    n_dev = exp.mesh.devices.size
    b = max(n_dev, b // n_dev * n_dev)
    ds = datasets.get_process_dataset(exp.cfg.data, "test", global_batch=b, seed=exp.cfg.seed + 1)
    loss = train.make_eval_loss(exp.loss_fn(train=False), exp.mesh)
    values = []
    for i in range(num_batches):
        batch = parallel.global_batch(ds.batch(i), exp.mesh)
        key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_EVAL_LOSS), step), i)
        values.append(float(parallel.to_host(loss(params, key, batch))))
    return float(np.mean(values))


def _likelihood(exp: experiment.Experiment, params) -> dict:
    """Mean log-likelihood over (up to config.eval.num_bpd_examples of) the bpd split."""
    cfg, e = exp.cfg, exp.cfg.eval
    n_dev = exp.mesh.devices.size
    b = max(n_dev, e.batch_size // n_dev * n_dev)
    image = len(exp.shape) == 3
    kw = {"uniform_dequantization": True} if image else {}
    ds = datasets.get_process_dataset(
        cfg.data, e.bpd_dataset, global_batch=b, seed=cfg.seed + 1, **kw
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

    def one_pass(repeat: int):
        """log p of every example of the split (dequantization draw `repeat`), in order."""
        logps, xs, nfes = [], [], []
        base = jax.random.fold_in(exp.key(experiment.KEY_LIKELIHOOD), repeat)
        for i, batch in enumerate(ds.epoch(b // jax.process_count(), repeat=repeat)):
            gb = parallel.global_batch(batch, exp.mesh)
            logp, nfe = logp_fn(params, jax.random.fold_in(base, i), gb["x"])
            mask = parallel.to_host(gb["mask"])
            logps.append(parallel.to_host(logp)[mask])
            if not image:
                xs.append(parallel.to_host(gb["x"])[mask])
            nfes.append(int(parallel.to_host(nfe)))
            if e.num_bpd_examples > 0 and sum(len(v) for v in logps) >= e.num_bpd_examples:
                break
        logp = np.concatenate(logps)
        if e.num_bpd_examples > 0:
            logp = logp[: e.num_bpd_examples]
        return logp, xs, nfes

    passes = [one_pass(r) for r in range(e.num_repeats)]
    logp = np.concatenate([p[0] for p in passes])
    xs = passes[0][1]
    results = {
        "likelihood_examples": int(len(passes[0][0])),
        "likelihood_repeats": e.num_repeats,
        "likelihood_nfe_mean": float(np.mean([n for p in passes for n in p[2]])),
    }
    out = {"results": results, "x": None}
    if image:
        dims = int(np.prod(exp.shape))
        bpd = likelihood.bits_per_dim(jnp.asarray(logp), dims, centered=cfg.data.centered)
        results["bpd"] = float(np.mean(np.asarray(bpd)))
        if e.num_repeats > 1:
            per_repeat = np.asarray(bpd).reshape(e.num_repeats, -1).mean(1)
            results["bpd_per_repeat"] = [float(v) for v in per_repeat]
        return out
    logp = passes[0][0]
    x = np.concatenate(xs)[: len(logp)]
    results["test_log_likelihood"] = float(np.mean(logp))
    train_ds = datasets.get_dataset(cfg.data, "train", batch_size=10_000, seed=cfg.seed + 2)
    fit = train_ds.batch(0)["x"]
    results["gaussian_fit_log_likelihood"] = float(
        toy_data.gaussian_fit_log_likelihood(jnp.asarray(fit), jnp.asarray(x))
    )
    density = None
    toy = cfg.data.dataset.split("/", 1)[1] if cfg.data.is_toy else None
    if toy in ("gmm", "eight_gaussians"):
        density = toy_data.toy_density(toy)
    if density is not None:
        results["true_log_likelihood"] = float(
            np.mean(np.asarray(density.log_prob(jnp.asarray(x))))
        )
    out["x"] = x
    return out


def _toy_scatter(exp: experiment.Experiment, params, out: str, num: int) -> None:
    """eval/<step>/scatter.png: test data | PC samples | ODE samples (whichever were drawn)."""
    if not parallel.is_main_process():
        return
    ds = datasets.get_dataset(exp.cfg.data, "test", batch_size=num, seed=exp.cfg.seed + 3)
    data = ds.batch(0)["x"]
    panels = {"data": np.asarray(data)}
    for method in exp.cfg.eval.samplers or (exp.cfg.sampling.method,):
        path = os.path.join(out, method + ".npz")
        if os.path.exists(path):
            panels[method] = np.load(path)["samples"]
    image_io.save_scatter(os.path.join(out, "scatter.png"), panels)
