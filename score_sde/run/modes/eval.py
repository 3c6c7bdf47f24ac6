"""Eval mode: the checkpoint loop. Per checkpoint the evaluators of score_sde.evaluation run
(eval loss, likelihood on a split, samples and their quality), in resumable rounds; one JSON each.

Checkpoints: the snapshots numbered begin_ckpt..end_ckpt (config.eval; end < 0: no upper bound),
snapshot k being step k * config.training.snapshot_freq as in the original code (the final one,
at n_iters, counts as n_iters // snapshot_freq), or the newest checkpoint of either kind when
begin_ckpt < 0. Results go to
`<workdir>/eval/<step>/results.json` with samples as `<method>.npz` / `<method>.png` beside it.

What each number means: score_sde.evaluation.loss (eval loss), .bits_per_dim (bits/dim over
the whole `config.eval.bpd_dataset` split, `config.eval.num_repeats` dequantization draws; nats
for 2-D toys) and .sample_quality (FID / IS / KID of `num_samples` samples per sampler against
`config.eval.fid_stats`: `fid_<method>`, ... in results.json). The Inception weights and the
statistics are checked before anything runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from score_sde import likelihood, parallel
from score_sde.config import Config
from score_sde.data import datasets, preprocess, toy_data
from score_sde.evaluation import bits_per_dim, sample_quality
from score_sde.evaluation import loss as loss_eval
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
    # fails early when weights or statistics are missing
    files = sample_quality.required_files(e, cfg.data, exp.shape)

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
        splits = {"test"} if e.enable_loss else set()
        for split in sorted(splits | ({e.bpd_dataset} if e.enable_bpd else set())):
            for line in datasets.get_dataset(cfg.data, split, batch_size=1, seed=0).notes:
                log.info(f"data: {line}")
        inception_fn, stats = None, None
        if files is not None:
            from score_sde.evaluation import evaluator

            inception_fn = evaluator.get_inception_fn(mesh=exp.mesh, weights=files[0])
            stats = files[1]
        all_results, done = [], set()
        like = exp.state_like()

        def one(step: int | None) -> None:
            if step is None:  # no intact checkpoint at all: an error, not a skip
                state, step = ckpts.restore_newest(like)
                if step is None:
                    return
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
                    evaluate_params(
                        exp, state.ema_params, run, step, inception_fn=inception_fn, stats=stats
                    )
                )

        if e.begin_ckpt < 0:
            one(None)
            return all_results
        last_new = time.monotonic()
        while True:
            if e.wait_for_checkpoints:
                ckpts.refresh()
            todo = [s for s in checkpoint_steps(cfg, ckpts) if s not in done]
            for step in todo:
                one(step)
            if todo:
                last_new = time.monotonic()
            reached = e.end_ckpt >= 0 and any(
                s // cfg.training.snapshot_freq >= e.end_ckpt for s in done
            )
            if not e.wait_for_checkpoints or reached:
                break
            if time.monotonic() - last_new > e.wait_timeout:
                log.info(
                    f"no new checkpoint in {run.workdir} for {e.wait_timeout:g} s: stopping "
                    f"(evaluated {sorted(done)})"
                )
                break
            time.sleep(e.poll_seconds)
    return all_results


def evaluate_params(
    exp: experiment.Experiment,
    params,
    run: Run,
    step: int,
    *,
    inception_fn: Callable | None = None,
    stats: str | None = None,
) -> dict:
    """Evaluates `params` (checkpoint `step`) as config.eval says; writes
    <workdir>/eval/<step>/results.json and the samples; returns the results. With `inception_fn`,
    image samples get FID / IS / KID against the reference statistics `stats`."""
    cfg, e, log = exp.cfg, exp.cfg.eval, run.log
    out = os.path.join(run.workdir, "eval", str(step))
    if run.main:
        fs.path(out).mkdir(parents=True, exist_ok=True)
    results: dict = {"step": int(step)}
    if e.enable_loss:
        results["eval_loss"] = _eval_loss(exp, params, step)
        log.info(f"checkpoint {step}: eval loss {results['eval_loss']:.5g}")
    if e.enable_bpd:
        results.update(_likelihood(exp, params, out, step))
        for k, v in results.items():
            if k.startswith(("test_", "bpd", "gaussian", "true")) and isinstance(v, float):
                log.info(f"checkpoint {step}: {k} {v:.5g}")
    if e.enable_sampling:
        for method in e.samplers or (cfg.sampling.method,):
            key = jax.random.fold_in(jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), step), 1)
            metrics, samples = _samples(
                exp, params, key, method, out, run, step, inception_fn, stats
            )
            results.update(metrics)
            if cfg.data.is_toy:
                results[f"samples_{method}_mean"] = np.asarray(samples.mean(0)).tolist()
        if cfg.data.is_toy:
            _toy_scatter(exp, out, e.num_samples)
            scatter = os.path.join(out, "scatter.png")
            log.info(f"checkpoint {step}: scatter plot of data and samples -> {scatter}")
    log.write(step, {k: v for k, v in results.items() if isinstance(v, float)}, prefix="eval/")
    if run.main:
        wd.write_json(os.path.join(out, "results.json"), results)
    return results


def _samples(exp, params, key, method: str, out: str, run: Run, step: int, inception_fn, stats):
    """config.eval.num_samples samples drawn with `method` in rounds of config.sampling.batch_size
    (kept under <out>/rounds-<settings>/<method>/ as they finish: a killed eval resumes there);
    writes <out>/<method>.npz and .png; with `inception_fn` also FID / IS / KID against `stats`.
    Returns ({metric: value}, the samples kept on the host)."""
    cfg, e, log = exp.cfg, exp.cfg.eval, run.log
    num = e.num_samples
    b = exp.round_size(num, cfg.sampling.batch_size)
    sampler = experiment.unconditional_sampler(exp, method, b)
    features = None
    if inception_fn is not None:
        to_images = lambda x: preprocess.to_images(x, cfg.data)
        features = sample_quality.inception_features(inception_fn, to_images)
    rounds = Rounds(
        os.path.join(_rounds_dir(exp, out), method),
        "round",
        -(-num // b),
        desc=f"checkpoint {step}: {method} samples",
        unit=exp.unit,
        per_round=b,
        total=num,
    )
    with rounds:
        drawn, nfe = sample_quality.draw(
            lambda i: sampler(params, jax.random.fold_in(key, i)),
            num,
            b,
            features=features,
            cache=rounds,
        )
    if rounds.resumed:
        log.info(f"checkpoint {step}: {method}: resumed {rounds.resumed} finished rounds")
    results: dict = {}
    if features is None:
        samples = drawn["samples"]
        saved = sample_files.on_host(samples, cfg.data)
    else:
        metrics = sample_quality.metrics(drawn, stats)
        samples = saved = drawn["images"]
        for k, v in metrics.items():
            results[f"{k}_{method}"] = v
        log.info(
            f"checkpoint {step}: {method} samples: FID {metrics['fid']:.4g}, IS "
            f"{metrics['inception_score']:.4g}"
            + (f", KID {metrics['kid']:.4g}" if "kid" in metrics else "")
            + f" ({metrics['num_samples']} samples vs {stats})"
        )
    results[f"nfe_{method}"] = nfe
    what = f"checkpoint {step}: {num} {method} samples ({nfe} score evaluations)"
    sample_files.write(run, os.path.join(out, method), saved, what)
    return results, samples


def _rounds_dir(exp: experiment.Experiment, out: str) -> str:
    """<out>/rounds-<hash of the settings the rounds depend on>."""
    c = exp.cfg.to_dict()
    return os.path.join(
        out, "rounds-" + fingerprint(c["seed"], c["eval"], c["sampling"], c["data"], c["model"])
    )


def _eval_batch(exp: experiment.Experiment) -> int:
    """config.eval.batch_size rounded down to a multiple of the device count (at least one each)."""
    n_dev = exp.mesh.devices.size
    return max(n_dev, exp.cfg.eval.batch_size // n_dev * n_dev)


def _eval_loss(exp: experiment.Experiment, params, step: int, num_batches: int = 8) -> float:
    from score_sde.run import train

    b = _eval_batch(exp)
    ds = datasets.get_process_dataset(exp.cfg.data, "test", global_batch=b, seed=exp.cfg.seed + 1)
    loss = train.make_eval_loss(exp.loss_fn(train=False), exp.mesh)
    batches = (parallel.global_batch(ds.batch(i), exp.mesh) for i in range(num_batches))
    key = jax.random.fold_in(exp.key(experiment.KEY_EVAL_LOSS), step)
    return loss_eval.mean_loss(lambda k, batch: loss(params, k, batch), batches, key, num_batches)


def _likelihood(exp: experiment.Experiment, params, out: str, step: int) -> dict:
    """Log-likelihood over (up to config.eval.num_bpd_examples of) the bpd split: bits/dim for
    images, nats for toys; each batch's values kept under <rounds>/likelihood/ as they finish."""
    cfg, e = exp.cfg, exp.cfg.eval
    b = _eval_batch(exp)
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
    def logp_fn(key, x):
        x = jax.lax.with_sharding_constraint(x, sharded)
        logp, _, nfe = lik_fn(key, lambda y, t: score_apply(params, y, t), x)
        out = {"logp": jax.lax.with_sharding_constraint(logp, rep), "nfe": nfe}
        return out if image else {**out, "x": jax.lax.with_sharding_constraint(x, rep)}

    n_examples = ds.num_examples
    if e.num_bpd_examples > 0:
        n_examples = min(n_examples, e.num_bpd_examples)
    rounds_dir = os.path.join(_rounds_dir(exp, out), "likelihood")

    def rounds(repeat: int) -> Rounds:
        return Rounds(
            rounds_dir,
            f"repeat{repeat}",
            -(-n_examples // b),
            desc=f"checkpoint {step}: log-likelihood, draw {repeat + 1}/{e.num_repeats}",
            unit=exp.unit,
            per_round=b,
            total=n_examples,
        )

    passes = bits_per_dim.log_likelihoods(
        logp_fn,
        lambda r: ds.epoch(b // jax.process_count(), repeat=r),
        exp.key(experiment.KEY_LIKELIHOOD),
        num_repeats=e.num_repeats,
        num_examples=n_examples,
        mesh=exp.mesh,
        store=rounds,
    )
    results = bits_per_dim.summary(passes)
    if image:
        return {
            **results,
            **bits_per_dim.image_results(
                passes, int(np.prod(exp.shape)), centered=cfg.data.centered
            ),
        }
    train_ds = datasets.get_dataset(cfg.data, "train", batch_size=10_000, seed=cfg.seed + 2)
    toy = cfg.data.dataset.split("/", 1)[1] if cfg.data.is_toy else None
    density = toy_data.toy_density(toy) if toy in ("gmm", "eight_gaussians") else None
    fit = train_ds.batch(0)["x"]
    return {**results, **bits_per_dim.toy_results(passes[0]["logp"], passes[0]["x"], fit, density)}


def _toy_scatter(exp: experiment.Experiment, out: str, num: int) -> None:
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
