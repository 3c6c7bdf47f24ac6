"""Cost of one probability-flow ODE likelihood function evaluation on a network-sized score.

    python benchmarks/likelihood_nfe.py [--config configs/vp/cifar10_ddpmpp_continuous.py]
                                        [--batch 128] [--reps 20] [--bf16]

Times, in one run on the local devices (batch sharded over a ('data',) mesh):
  forward   one score evaluation s(x, t) (the bare network),
  drift     the PF-ODE drift f - g^2 s / 2,
  lik_eval  drift + Hutchinson divergence from one jax.linearize (one forward + one JVP),
  lik_solve a full likelihood solve (Tsit5, rtol = atol = 1e-5) on the untrained network, divided
            by its NFE (so solver overhead per evaluation is included),
and prints one JSON line with ms per evaluation and the ratios lik_eval / forward and
lik_solve_per_nfe / forward. Reference (shared/reference/FIGURES.md): the original spends 166 ms per
evaluation at batch 128 on an H100 (scipy RK45 on the host), 79 ms for drift + VJP on the device.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from score_sde import config as config_lib  # noqa: E402
from score_sde import likelihood, models  # noqa: E402
from score_sde import score_fn as score_lib  # noqa: E402
from score_sde.run import experiment  # noqa: E402


def _time(fn, *args, reps: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/vp/cifar10_ddpmpp_continuous.py")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--bf16", action="store_true", help="config.model.dtype = 'bfloat16'")
    parser.add_argument("--skip_solve", action="store_true")
    args = parser.parse_args()

    cfg = config_lib.load(
        os.path.join(ROOT, args.config), {"model.dtype": "bfloat16"} if args.bf16 else {}
    )
    sde = experiment.make_sde(cfg)
    apply_fn, params = models.init_model(cfg.model, cfg.data, jax.random.key(0))
    score_apply = score_lib.get_score_fn(sde, apply_fn, continuous=cfg.training.continuous)
    score_fn = score_lib.params_score_fn(score_apply, params)

    mesh = Mesh(np.array(jax.devices()), ("data",))
    shard = NamedSharding(mesh, P("data"))
    shape = (args.batch, *cfg.data.shape)
    x = jax.device_put(jax.random.normal(jax.random.key(1), shape), shard)
    t = jax.device_put(jnp.full((args.batch,), 0.5), shard)
    probe = jax.device_put(jax.random.rademacher(jax.random.key(2), shape, jnp.float32), shard)
    rsde = sde.reverse(score_fn, probability_flow=True)

    forward = jax.jit(score_fn)
    drift = jax.jit(lambda x, t: rsde.sde(x, t)[0])
    lik_eval = jax.jit(
        lambda x, t: likelihood.drift_and_divergence(lambda y, s: rsde.sde(y, s)[0], x, t, probe)
    )

    res = {
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "config": args.config,
        "batch": args.batch,
        "dtype": cfg.model.dtype,
        "forward_ms": 1e3 * _time(forward, x, t, reps=args.reps),
        "drift_ms": 1e3 * _time(drift, x, t, reps=args.reps),
        "lik_eval_ms": 1e3 * _time(lik_eval, x, t, reps=args.reps),
    }
    res["lik_eval_over_forward"] = res["lik_eval_ms"] / res["forward_ms"]
    if not args.skip_solve:
        like = jax.jit(likelihood.get_likelihood_fn(sde), static_argnums=1)
        data = jax.device_put(jnp.clip(0.1 * x, -1, 1), shard)
        jax.block_until_ready(like(jax.random.key(3), score_fn, data))
        t0 = time.perf_counter()
        logp, _, nfe = jax.block_until_ready(like(jax.random.key(3), score_fn, data))
        solve_s = time.perf_counter() - t0
        res.update(
            lik_solve_s=solve_s, lik_nfe=int(nfe), lik_solve_ms_per_nfe=1e3 * solve_s / int(nfe)
        )
        res["lik_solve_per_nfe_over_forward"] = res["lik_solve_ms_per_nfe"] / res["forward_ms"]
        res["original_ms_per_nfe"] = 166.0
    print(json.dumps(res))


if __name__ == "__main__":
    main()
