"""Ours against the PyTorch port (yang-song/score_sde_pytorch) on the same CPU, same weights.

    PYTHONPATH=$TORCH_ENV/lib/python3.11/site-packages .venv/bin/python \
        benchmarks/vs_pytorch_cpu.py --port_dir $PORT [--config configs/vp/cifar10_ddpmpp_continuous.py]
        [--nf 32] [--batch 8] [--threads 2] [--rounds 7]

`--port_dir` is a checkout of the port (its `models`, `sde_lib`, `losses`, `likelihood` are imported
from there; nothing of it is copied here). Its `op` package compiles CUDA extensions at import, so
a CPU stand-in `op.upfirdn2d` written in plain torch ops is installed in sys.modules first (DDPM++
has fir=False and never calls it). The python must import both jax and torch (with the project's
venv: PYTHONPATH to a torch install's site-packages of the same Python version and numpy).

Our parameters are initialized from `--seed`, perturbed (every leaf + 0.01 N(0, 1), so that the
zero-initialized output layers do not hide a difference) and converted to the port's state_dict
with score_sde.convert.layout. The forward outputs and the likelihood's drift and divergence are
compared first (max abs diff). Then, timed A, B, A, B, ... (`--rounds` times each, after warm-up):
- forward: one network evaluation, labels 999 t (ours: jit(apply_fn); the port: model.eval(),
  no_grad);
- train: one optimizer step of the config (ours: the launcher's `Experiment.train_steps()`, on CPU
  one jitted step with the state donated; the port: losses.get_step_fn with its Adam, clipping,
  warmup and EMA);
- likelihood: one evaluation of the probability-flow ODE's vector field with a Rademacher probe
  (ours: drift and v^T J v from one jax.jvp, score_sde.likelihood.drift_and_divergence; the port:
  its ode_func's drift under no_grad plus likelihood.get_div_fn's autograd VJP).
Prints one JSON line for the parity check and one per measurement with the medians and the ratio
ours' time / port's time. Both frameworks get `--threads` threads (CPU affinity, XLA's Eigen pool,
torch.set_num_threads). Each row carries the 1-minute load average before and after: with other
processes on the same cores, torch's OpenMP regions wait for a descheduled thread at every op and
its times swing 10-30x (XLA's work-stealing pool does not); compare at --threads 1 then.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a script run from anywhere: the configs/ package


def limit_threads(n: int) -> None:
    """n threads for both frameworks; must run before jax and torch start their pools."""
    cores = sorted(os.sched_getaffinity(0))
    if n > len(cores):
        raise ValueError(f"--threads ({n}) exceeds the {len(cores)} cores this process may use")
    os.sched_setaffinity(0, cores[:n])
    eigen = "true" if n > 1 else "false"
    flags = f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
    os.environ["OMP_NUM_THREADS"] = str(n)


def _cpu_op_module():
    """A stand-in for the port's `op` package: upfirdn2d(x [B, C, H, W], k [kh, kw], up, down,
    pad=(p0, p1)) in plain torch ops: insert up - 1 zeros after every pixel, pad p0 / p1 on each
    side (negative: crop), convolve depthwise with k (true convolution), keep every down-th pixel."""
    import torch
    import torch.nn.functional as F

    def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
        B, C, H, W = x.shape
        if up > 1:
            z = x.new_zeros(B, C, H, up, W, up)
            z[:, :, :, 0, :, 0] = x
            x = z.reshape(B, C, H * up, W * up)
        p0, p1 = pad
        x = F.pad(x, [p0, p1, p0, p1])
        w = torch.flip(kernel, [0, 1]).to(x)[None, None].repeat(C, 1, 1, 1)
        return F.conv2d(x, w, stride=down, groups=C)

    op = types.ModuleType("op")
    op.upfirdn2d = upfirdn2d
    return op


def _port_config(cfg):
    """The port's ConfigDict (the fields its models, SDEs and optimizer read) of our typed config."""
    import dataclasses

    import ml_collections

    c = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict(dataclasses.asdict(cfg.model))
    c.data = ml_collections.ConfigDict(dataclasses.asdict(cfg.data))
    c.optim = ml_collections.ConfigDict(dataclasses.asdict(cfg.optim))
    c.training = ml_collections.ConfigDict(dataclasses.asdict(cfg.training))
    c.device = "cpu"
    return c


def _perturbed(params, key):
    import jax

    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    noisy = [
        x + 0.01 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def _interleaved(a, b, rounds: int, reps: int):
    """Median seconds per call of a() and b(), timed a, b, a, b, ... after one warm-up each."""
    a(), b()
    ta, tb = [], []
    for _ in range(rounds):
        for fn, out in ((a, ta), (b, tb)):
            t = time.perf_counter()
            for _ in range(reps):
                fn()
            out.append((time.perf_counter() - t) / reps)
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port_dir", required=True, help="checkout of score_sde_pytorch")
    parser.add_argument("--config", default="configs/vp/cifar10_ddpmpp_continuous.py")
    parser.add_argument("--nf", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=2, help="calls per timed round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="forward,train,likelihood")
    args = parser.parse_args()
    limit_threads(args.threads)

    try:
        import torch
    except ImportError:
        sys.exit(
            "vs_pytorch_cpu.py needs torch next to jax: PYTHONPATH=<torch site-packages> "
            ".venv/bin/python benchmarks/vs_pytorch_cpu.py --port_dir ..."
        )
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from score_sde import config, likelihood, parallel
    from score_sde.convert import layout
    from score_sde.run import experiment, train

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if not os.path.isdir(os.path.join(args.port_dir, "models")):
        sys.exit(
            f"--port_dir={args.port_dir}: no models/ package; pass a score_sde_pytorch checkout"
        )
    sys.modules["op"] = _cpu_op_module()
    sys.path.append(os.path.abspath(args.port_dir))  # after ours: our configs/ package wins
    import likelihood as port_likelihood
    import losses as port_losses
    import models.ncsnpp  # noqa: F401 - registers the port's 'ncsnpp'
    import sde_lib as port_sde
    from models import utils as mutils
    from models.ema import ExponentialMovingAverage

    cfg = config.load(
        os.path.join(ROOT, args.config),
        {"model.nf": str(args.nf), "training.batch_size": str(args.batch)},
    )
    if not cfg.training.continuous or cfg.training.sde not in ("vpsde", "subvpsde", "vesde"):
        raise ValueError(f"--config={args.config}: needs a continuous-time VP / sub-VP / VE config")
    exp = experiment.build(cfg, parallel.make_mesh(1))
    params = _perturbed(exp.init_params(jax.random.key(args.seed)), jax.random.key(args.seed + 1))
    pcfg = _port_config(cfg)
    net = mutils.get_model(cfg.model.name)(pcfg)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in layout.to_torch_layout(
        nnx.to_pure_dict(params), prefix="").items()}  # fmt: skip
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if unexpected or set(missing) - {"sigmas"}:
        raise ValueError(f"converted weights do not fit the port: {missing=}, {unexpected=}")
    m = cfg.model
    if cfg.training.sde == "vesde":
        psde = port_sde.VESDE(sigma_min=m.sigma_min, sigma_max=m.sigma_max, N=m.num_scales)
    else:
        cls = port_sde.VPSDE if cfg.training.sde == "vpsde" else port_sde.subVPSDE
        psde = cls(beta_min=m.beta_min, beta_max=m.beta_max, N=m.num_scales)

    B, shape = args.batch, exp.shape
    rng = np.random.default_rng(args.seed)
    x = rng.uniform(-1, 1, (B, *shape)).astype(np.float32)
    t = rng.uniform(1e-3, 1, (B,)).astype(np.float32)
    probe = (2.0 * rng.integers(0, 2, (B, *shape)) - 1).astype(np.float32)
    x_t = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    probe_t = torch.from_numpy(probe.transpose(0, 3, 1, 2).copy())
    nchw = lambda a: np.asarray(a).transpose(0, 3, 1, 2)

    # ours
    labels = jnp.asarray(t * 999.0) if cfg.training.sde != "vesde" else None
    if labels is None:
        labels = exp.sde.marginal_coeffs(jnp.asarray(t))[1]
    fwd = jax.jit(lambda p, x, lab: exp.apply_fn(p, x, lab))

    def vector_field(p, x, t, v):
        rsde = exp.sde.reverse(exp.score_fn(p), probability_flow=True)
        drift = lambda y, s: rsde.sde(y, jnp.full((y.shape[0],), s, y.dtype))[0]
        return likelihood.drift_and_divergence(drift, x, t, v)

    lik = jax.jit(vector_field)
    xj, pj = jnp.asarray(x), jnp.asarray(probe)
    s_lik = float(t[0])  # one time for the whole batch, as the ODE solvers evaluate it

    # the port
    net.eval()
    p_labels = torch.from_numpy(np.array(labels))  # a writable copy
    score_fn = mutils.get_score_fn(psde, net, train=False, continuous=True)
    p_rsde = psde.reverse(score_fn, probability_flow=True)
    p_drift = lambda y, s: p_rsde.sde(y, s)[0]
    p_div = port_likelihood.get_div_fn(p_drift)
    vec_s = torch.full((B,), s_lik)

    def port_forward():
        with torch.no_grad():
            return net(x_t, p_labels)

    def port_vector_field():
        with torch.no_grad():
            return p_drift(x_t, vec_s), p_div(x_t, vec_s, probe_t)

    # parity, before anything trains
    out_ours = np.asarray(fwd(params, xj, labels))
    out_port = port_forward().numpy()
    f_ours, d_ours = (np.asarray(a) for a in lik(params, xj, s_lik, pj))
    f_port, d_port = (a.numpy() for a in port_vector_field())
    parity = {
        "check": "parity",
        "config": args.config,
        "nf": args.nf,
        "batch": B,
        "forward_max_abs_diff": float(np.max(np.abs(nchw(out_ours) - out_port))),
        "forward_max_abs": float(np.max(np.abs(out_port))),
        "drift_max_abs_diff": float(np.max(np.abs(nchw(f_ours) - f_port))),
        "divergence_max_abs_diff": float(np.max(np.abs(d_ours - d_port))),
        "divergence_max_abs": float(np.max(np.abs(d_port))),
    }
    print(json.dumps(parity), flush=True)

    device = {
        "device": jax.devices()[0].device_kind,
        "threads": args.threads,
        "jax": jax.__version__,
        "torch": torch.__version__,
        "nf": args.nf,
        "batch": B,
    }
    load_before = os.getloadavg()[0]  # other processes on these cores skew torch's OpenMP most

    def report(name, ours_s, port_s):
        row = {
            "measurement": name,
            **device,
            "ours_s": round(ours_s, 5),
            "port_s": round(port_s, 5),
            "ours_over_port_time": round(ours_s / port_s, 3),
            "ours_img_s": round(B / ours_s, 2),
            "port_img_s": round(B / port_s, 2),
            "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
        print(json.dumps(row), flush=True)

    only = set(args.only.split(","))
    if "forward" in only:
        ours = lambda: jax.block_until_ready(fwd(params, xj, labels))
        report("forward", *_interleaved(ours, port_forward, args.rounds, args.reps))
    if "likelihood" in only:
        ours = lambda: jax.block_until_ready(lik(params, xj, s_lik, pj))
        report("likelihood_per_nfe", *_interleaved(ours, port_vector_field, args.rounds, args.reps))
    if "train" in only:
        state = [train.init_state(params, exp.tx, exp.key(experiment.KEY_INIT))]
        steps = exp.train_steps()
        batches = [{"x": x}]

        def ours():
            state[0], metrics = steps(state[0], batches)
            jax.block_until_ready(metrics)

        net.train()
        optimizer = port_losses.get_optimizer(pcfg, net.parameters())
        ema = ExponentialMovingAverage(net.parameters(), decay=m.ema_rate)
        p_state = dict(optimizer=optimizer, model=net, ema=ema, step=0)
        p_step = port_losses.get_step_fn(
            psde,
            train=True,
            optimize_fn=port_losses.optimization_manager(pcfg),
            reduce_mean=cfg.training.reduce_mean,
            continuous=True,
            likelihood_weighting=cfg.training.likelihood_weighting,
        )
        port = lambda: p_step(p_state, x_t).item()
        report("train_step", *_interleaved(ours, port, args.rounds, args.reps))


if __name__ == "__main__":
    main()
