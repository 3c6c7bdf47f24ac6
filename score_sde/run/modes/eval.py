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
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from score_sde import likelihood, parallel
from score_sde.config import Config
from score_sde.data import datasets, toy_data
from score_sde.evaluation import inception as inception_lib
from score_sde.run import experiment, sample_files
from score_sde.run.opening import Run, open_run
from score_sde.run.rounds import Rounds, fingerprint
from score_sde.store import fs, image_io
from score_sde.store import workdir as wd


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
    """Evaluates the configured checkpoints of `workdir`; one results dict per checkpoint.

    begin_ckpt < 0: the newest intact checkpoint (a damaged newer one is skipped with a line).
    A range: each snapshot in it; a damaged one is reported and skipped. With
    config.eval.wait_for_checkpoints the range is awaited as training writes it.
    """
    from score_sde.store.checkpoint import DamagedCheckpointError

    exp = experiment.build(cfg, mesh)
    e = cfg.eval
    sample_quality = fid_inputs(cfg, exp.shape)  # fails early when weights or stats are missing

    def check(ckpts) -> None:
        if e.wait_for_checkpoints or checkpoint_steps(cfg, ckpts):
            return
        train = f"train first with --mode=train --workdir={ckpts.workdir}"
        if e.begin_ckpt < 0:  # the newest of any kind was asked for: there is none at all
            raise ValueError(f"no checkpoint to evaluate in {ckpts.workdir}; {train}")
        raise ValueError(
            f"no checkpoint to evaluate in {ckpts.workdir} "
            f"(config.eval.begin_ckpt={e.begin_ckpt}, "
            f"end_ckpt={e.end_ckpt}: snapshot numbers, step // snapshot_freq "
            f"({cfg.training.snapshot_freq}); snapshot steps: {ckpts.snapshot_steps()}); "
            f"{train}, widen the range, or pass --config.eval.begin_ckpt=-1 for the newest "
            "checkpoint"
        )

    # eval.lock, not run.lock: training may run meanwhile
    with open_run(workdir, lock="eval.lock", read_only=True, check=check, stream=stream) as run:
        ckpts, log = run.ckpts, run.log
        inception_fn = None
        if sample_quality is not None:
            from score_sde.evaluation import evaluator

            inception_fn = evaluator.get_inception_fn(mesh=exp.mesh, weights=sample_quality[0])
        all_results, done = [], set()
        like = exp.state_like()

        def one(step: int | None) -> None:
            if step is None:  # no intact checkpoint at all: an error, not a skip
                state, step = ckpts.restore_newest(like)
                done.add(step)
            else:
                try:
                    state = ckpts.restore(like, step)
                except DamagedCheckpointError as err:
                    log.info(f"skipped: {' '.join(str(err).split())}")
                    done.add(step)
                    return
                done.add(step)
            if state is not None:
                all_results.append(
                    evaluate_params(exp, state.ema_params, run, step, inception_fn=inception_fn)
                )

        if e.begin_ckpt < 0:
            one(None)
            return all_results
        last_new = time.time()
        while True:
            if e.wait_for_checkpoints:
                ckpts.refresh()
            todo = [s for s in checkpoint_steps(cfg, ckpts) if s not in done]
            for step in todo:
                one(step)
            if todo:
                last_new = time.time()
            reached = e.end_ckpt >= 0 and any(
                s // cfg.training.snapshot_freq >= e.end_ckpt for s in done
            )
            if not e.wait_for_checkpoints or reached:
                break
            if time.time() - last_new > e.wait_timeout:
                log.info(
                    f"no new checkpoint in {run.workdir} for {e.wait_timeout:g} s: stopping "
                    f"(evaluated {sorted(done)})"
                )
                break
            time.sleep(e.poll_seconds)
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
    if not fs.path(weights).is_file():
        raise ValueError(
            f"FID/IS/KID need the Inception weights, not found at {weights}: download "
            f"{inception_lib.WEIGHTS_URL} and convert it once with `python -m "
            f"score_sde.evaluation.inception pt_inception-2015-12-05-6726825d.pth --out "
            f"{weights}` (no torch needed), or point config.eval.inception_weights (or "
            "$SCORE_SDE_INCEPTION_WEIGHTS) at the converted .npz; --config.eval.enable_fid=False "
            "skips sample quality"
        )
    stats = os.path.expanduser(e.fid_stats or default_fid_stats(cfg.data))
    if not fs.path(stats).is_file():
        raise ValueError(
            f"FID/KID need reference statistics of the data, not found at {stats}: make them "
            "once with `python -m score_sde.evaluation.reference_stats --config=<this run's "
            f"config file> --split=train --out={stats}`, or set config.eval.fid_stats to a "
            "pytorch-fid .npz (mu, sigma); --config.eval.enable_fid=False skips sample quality"
        )
    return weights, stats


def _features(exp: experiment.Experiment, x, valid: int, inception_fn) -> dict:
    """Inception features of the first `valid` rows of a global model-space image batch
    [b, H, W, C]: {'pool_3' [valid, 2048], 'logits' [valid, 1008], 'images' uint8}."""
    images = datasets.to_images(x, exp.cfg.data)
    feats = parallel.to_host(inception_fn(images))
    return {
        "pool_3": feats["pool_3"][:valid].astype(np.float32),
        "logits": feats["logits"][:valid].astype(np.float32),
        "images": image_io.to_uint8(parallel.to_host(images)[:valid]),
    }


def sample_quality_metrics(
    exp: experiment.Experiment, batches, num: int, inception_fn, stats_path: str, keep: int = 0
) -> tuple[dict, np.ndarray]:
    """FID / IS / KID of the first `num` rows of `batches` (global model-space image arrays
    [b, H, W, C]), and the first `keep` rows as uint8 images."""

    parts, seen = [], 0
    for x in batches:
        valid = min(len(x), num - seen)
        if valid <= 0:
            break
        parts.append(_features(exp, x, valid, inception_fn))
        seen += valid
    metrics = _quality(parts, stats_path, num)
    return metrics, np.concatenate([p["images"] for p in parts])[:keep]


def _quality(parts: list[dict], stats_path: str, num: int) -> dict:
    """FID / IS / KID of the `_features` parts of `num` samples against `stats_path`."""
    from score_sde.evaluation import evaluator

    pool, logits = (np.concatenate([p[k] for p in parts]) for k in ("pool_3", "logits"))
    return evaluator.compute_metrics((pool, logits), stats_path, num_samples=num)


def evaluate_params(exp: experiment.Experiment, params, run: Run, step: int, *, inception_fn=None):
    """Evaluates `params` (checkpoint `step`) as config.eval says; writes
    <workdir>/eval/<step>/results.json and the samples; returns the results."""
    cfg, e, log = exp.cfg, exp.cfg.eval, run.log
    out = os.path.join(run.workdir, "eval", str(step))
    if run.main:
        fs.path(out).mkdir(parents=True, exist_ok=True)
    results: dict = {"step": int(step)}
    if e.enable_loss:
        results["eval_loss"] = _eval_loss(exp, params, step)
        log.info(f"checkpoint {step}: eval loss {results['eval_loss']:.5g}")
    if e.enable_bpd:
        lik = _likelihood(exp, params, out, step)
        results.update(lik.pop("results"))
        for k, v in results.items():
            if k.startswith(("test_", "bpd", "gaussian", "true")) and isinstance(v, float):
                log.info(f"checkpoint {step}: {k} {v:.5g}")
    if e.enable_sampling:
        for method in e.samplers or (cfg.sampling.method,):
            key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), step), 1)
            metrics, samples = _samples(exp, params, key, method, out, run, step, inception_fn)
            results.update(metrics)
            if cfg.data.is_toy:
                results[f"samples_{method}_mean"] = np.asarray(samples.mean(0)).tolist()
        if cfg.data.is_toy:
            _toy_scatter(exp, params, out, e.num_samples)
            scatter = os.path.join(out, "scatter.png")
            log.info(f"checkpoint {step}: scatter plot of data and samples -> {scatter}")
    log.write(step, {k: v for k, v in results.items() if isinstance(v, float)}, prefix="eval/")
    if run.main:
        wd.write_json(os.path.join(out, "results.json"), results)
    return results


# Image samples kept in <method>.npz (as uint8) when FID runs over many more.
MAX_SAVED_SAMPLES = 10_000


def _samples(exp, params, key, method: str, out: str, run: Run, step: int, inception_fn):
    """Draws config.eval.num_samples samples with `method` in rounds of config.sampling.
    batch_size (each round's samples, or Inception features for images, kept under
    <out>/rounds-<settings>/<method>/ as they finish: a killed eval resumes there); writes
    <out>/<method>.npz and .png; with `inception_fn` also FID / IS / KID against the reference
    statistics. Returns ({metric: value}, the samples kept on the host)."""

    cfg, e, log = exp.cfg, exp.cfg.eval, run.log
    num = e.num_samples
    b = exp.round_size(num, cfg.sampling.batch_size)
    draw = experiment.unconditional_sampler(exp, method, b)

    def compute(i):
        x, nfe = draw(params, jax.random.fold_in(key, i))
        valid = min(b, num - i * b)
        if inception_fn is None:
            return {"samples": parallel.to_host(x)[:valid], "nfe": parallel.to_host(nfe)}
        arrays = _features(exp, x, valid, inception_fn)
        if i * b >= MAX_SAVED_SAMPLES:
            del arrays["images"]
        return {**arrays, "nfe": parallel.to_host(nfe)}

    rounds = Rounds(
        os.path.join(_rounds_dir(exp, out), method),
        "round",
        -(-num // b),
        desc=f"checkpoint {step}: {method} samples",
        unit=exp.unit,
        per_round=b,
        total=num,
    )
    parts = [arrays for _, arrays in rounds.items(compute)]
    if rounds.resumed:
        log.info(f"checkpoint {step}: {method}: resumed {rounds.resumed} finished rounds")
    nfe = int(parts[-1]["nfe"])
    results = {}
    if inception_fn is None:
        samples = np.concatenate([p["samples"] for p in parts])
    else:
        stats = fid_inputs(cfg, exp.shape)[1]
        metrics = _quality(parts, stats, num)
        samples = np.concatenate([p["images"] for p in parts if "images" in p])
        for k, v in metrics.items():
            results[f"{k}_{method}"] = v
        log.info(
            f"checkpoint {step}: {method} samples: FID {metrics['fid']:.4g}, IS "
            f"{metrics['inception_score']:.4g}"
            + (f", KID {metrics['kid']:.4g}" if "kid" in metrics else "")
            + f" ({metrics['num_samples']} samples vs {stats})"
        )
    results[f"nfe_{method}"] = nfe
    # with Inception the kept rows are uint8 images already (_features); else model space
    saved = samples if inception_fn is not None else sample_files.on_host(samples, cfg.data)
    what = f"checkpoint {step}: {num} {method} samples ({nfe} score evaluations)"
    sample_files.write(run, os.path.join(out, method), saved, what)
    return results, samples


def _rounds_dir(exp: experiment.Experiment, out: str) -> str:
    """<out>/rounds-<hash of the settings the rounds depend on>."""
    c = exp.cfg.to_dict()
    return os.path.join(
        out, "rounds-" + fingerprint(c["seed"], c["eval"], c["sampling"], c["data"], c["model"])
    )


def _eval_loss(exp: experiment.Experiment, params, step: int, num_batches: int = 8) -> float:
    from score_sde.run import train

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


def _likelihood(exp: experiment.Experiment, params, out: str, step: int) -> dict:
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

    n_examples = ds.num_examples
    if e.num_bpd_examples > 0:
        n_examples = min(n_examples, e.num_bpd_examples)
    n_batches = -(-n_examples // b)
    rounds_dir = _rounds_dir(exp, out)

    def one_pass(repeat: int):
        """log p of every example of the split (dequantization draw `repeat`), in order; each
        batch's values kept under <rounds>/likelihood/ as they finish."""
        logps, xs, nfes = [], [], []
        base = jax.random.fold_in(exp.key(experiment.KEY_LIKELIHOOD), repeat)
        rounds = Rounds(
            os.path.join(rounds_dir, "likelihood"),
            f"repeat{repeat}",
            n_batches,
            desc=f"checkpoint {step}: log-likelihood, draw {repeat + 1}/{e.num_repeats}",
            unit=exp.unit,
            per_round=b,
            total=n_examples,
        )
        batches = ds.epoch(b // jax.process_count(), repeat=repeat)
        with rounds:
            for i, batch in zip(range(n_batches), batches, strict=False):

                def compute(i=i, batch=batch):
                    gb = parallel.global_batch(batch, exp.mesh)
                    logp, nfe = logp_fn(params, jax.random.fold_in(base, i), gb["x"])
                    mask = parallel.to_host(gb["mask"])
                    out = {"logp": parallel.to_host(logp)[mask], "nfe": parallel.to_host(nfe)}
                    if not image:
                        out["x"] = parallel.to_host(gb["x"])[mask]
                    return out

                arrays = rounds.get(i, compute)
                logps.append(arrays["logp"])
                nfes.append(int(arrays["nfe"]))
                if not image:
                    xs.append(arrays["x"])
        logp = np.concatenate(logps)[:n_examples]
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
        if fs.path(path).exists():
            panels[method] = fs.load_npz(path)["samples"]
    image_io.save_scatter(os.path.join(out, "scatter.png"), panels)
