"""Likelihood NFE: our adaptive solve against the PyTorch port's solver, on the same vector field.

    python benchmarks/likelihood_solvers.py [--batch 16] [--tol 1e-5]

The port (yang-song/score_sde_pytorch, likelihood.py) integrates the probability-flow ODE with
Hutchinson's divergence by scipy's `solve_ivp(method="RK45")` on the host, rtol = atol = 1e-5;
ours (score_sde.likelihood, default) by diffrax's Tsit5 on the device at the same tolerances, one
error norm over the whole batch like the port's flattened state. Both here integrate exactly the
same vector field (`likelihood.drift_and_divergence` of the exact score, one Rademacher probe) of a
64-dimensional Gaussian mixture shaped like the digits data (the ten class means of scikit-learn's
digits in [-1, 1], isotropic std 0.25) under the VP SDE, from the same points, so the NFE and
log p they give differ only by the solver. Prints one JSON line: NFE of each (Tsit5, Dopri5 in
diffrax, scipy RK45) and their log p difference. Whole likelihood time = NFE x time per NFE; the
time per NFE against the port is `vs_pytorch_cpu.py`'s (RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tol", type=float, default=1e-5, help="rtol = atol of every solver")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from scipy.integrate import solve_ivp
    from sklearn.datasets import load_digits

    from score_sde import likelihood
    from score_sde import sde as sde_lib
    from score_sde.gmm import GaussianMixture

    digits = load_digits()
    x01 = digits.data / 16.0
    means = np.stack([2 * x01[digits.target == k].mean(0) - 1 for k in range(10)])
    gmm = GaussianMixture.isotropic(jnp.full((10,), 0.1), jnp.asarray(means, jnp.float32), 0.25)
    sde = sde_lib.get_sde("vpsde")
    score = gmm.score_fn(sde)
    x = jnp.asarray(2 * x01[: args.batch] - 1, jnp.float32)
    probe = jax.random.rademacher(jax.random.key(0), x.shape, x.dtype)
    eps = 1e-5

    out = {"batch": args.batch, "dim": 64, "tol": args.tol}
    for method in ("tsit5", "dopri5"):
        lik = likelihood.get_likelihood_fn(sde, method=method, rtol=args.tol, atol=args.tol)
        # the same probe: the key the likelihood draws it from
        logp, _, nfe = jax.jit(lambda x, f=lik: f(jax.random.key(0), score, x))(x)
        out[f"nfe_{method}"] = int(nfe)
        out[f"logp_{method}"] = np.asarray(logp)

    rsde = sde.reverse(score, probability_flow=True)
    drift = lambda y, t: rsde.sde(y, jnp.full((y.shape[0],), t, y.dtype))[0]
    field = jax.jit(lambda t, y: likelihood.drift_and_divergence(drift, y, t, probe))
    n = x.size

    def fun(t, state):  # the port's flattened [x, delta_logp] state, float64 on the host
        fx, div = field(jnp.float32(t), jnp.asarray(state[:n].reshape(x.shape), jnp.float32))
        return np.concatenate([np.asarray(fx, np.float64).ravel(), np.asarray(div, np.float64)])

    y0 = np.concatenate([np.asarray(x, np.float64).ravel(), np.zeros(args.batch)])
    sol = solve_ivp(fun, (eps, sde.T), y0, rtol=args.tol, atol=args.tol, method="RK45")
    z = jnp.asarray(sol.y[:n, -1].reshape(x.shape), jnp.float32)
    logp_rk45 = np.asarray(sde.prior_logp(z)) + sol.y[n:, -1]
    out["nfe_scipy_rk45"] = int(sol.nfev)
    out["max_abs_logp_diff_tsit5_vs_rk45_nats"] = float(
        np.max(np.abs(out["logp_tsit5"] - logp_rk45))
    )
    out["mean_logp_nats"] = float(np.mean(logp_rk45))
    for method in ("tsit5", "dopri5"):
        del out[f"logp_{method}"]
    out["nfe_tsit5_over_rk45"] = round(out["nfe_tsit5"] / out["nfe_scipy_rk45"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
