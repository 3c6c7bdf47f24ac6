"""NFE against accuracy of every sampler on one Gaussian mixture with the exact score (CPU is fine).

    python benchmarks/fast_samplers.py [--sde vp|subvp|ve] [--n 20000] [--markdown]

The mixture is the 2-D one of the sampler tests (two anisotropic components with std 0.2-0.3,
weights 0.3 / 0.7). For each sampler and number of steps: the NFE; `moments`, the largest error
of the component weights, mean and covariance against the exact mixture (Monte-Carlo floor with
20,000 samples: about 0.005-0.01); and for the deterministic samplers `flow_rms`, the RMS distance
to the exact probability-flow map of the same prior samples (a tight adaptive solve). One JSON
line per row; `--markdown` prints the table of README.md.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from score_sde import fast_sampling, sampling
from score_sde import sde as sde_lib
from score_sde.gmm import GaussianMixture

SDES = {
    "vp": sde_lib.VPSDE(),
    "subvp": sde_lib.SubVPSDE(),
    "ve": sde_lib.VESDE(sigma_min=0.01, sigma_max=50.0),
}
ROWS = [  # (label, method, options)
    *[("Euler-Maruyama (PC)", "em", {"N": n}) for n in (35, 100, 1000)],
    ("probability-flow ODE (tsit5, 1e-5)", "ode", {}),
    *[("EDM Heun", "edm_heun", {"num_steps": n}) for n in (6, 10, 18, 50)],
    *[("DPM-Solver++ 2M", "dpmpp_2m", {"num_steps": n}) for n in (10, 20, 35)],
    *[("DPM-Solver++ 3M", "dpmpp_3m", {"num_steps": n}) for n in (10, 20, 35)],
    *[("DPM-Solver++ 2S", "dpmpp_2s", {"num_steps": n}) for n in (6, 10, 18)],
    *[("DDIM", "ddim", {"num_steps": n}) for n in (10, 20, 50)],
    *[("SDE-DPM-Solver++ 2M", "dpmpp_2m_sde", {"num_steps": n}) for n in (20, 100)],
    ("EDM Heun, S_churn 40", "edm_heun", {"num_steps": 100, "S_churn": 40.0, "S_tmin": 0.05,
                                          "S_tmax": 50.0}),
]  # fmt: skip


def mixture() -> GaussianMixture:
    weights = jnp.array([0.3, 0.7])
    means = jnp.array([[-1.4, -0.7], [0.6, 0.3]])
    covs = jnp.array([[[0.09, 0.03], [0.03, 0.04]], [[0.04, -0.01], [-0.01, 0.06]]])
    return GaussianMixture(weights, means, covs)


def moments_error(x: np.ndarray, gmm: GaussianMixture) -> float:
    """max |weights - w|, |mean - mu|, |cov - Sigma| (weights by the exact responsibilities)."""
    w = np.asarray(gmm.weights)
    labels = np.asarray(jnp.argmax(gmm.responsibilities(jnp.asarray(x)), -1))
    freq = np.bincount(labels, minlength=len(w)) / len(x)
    return float(
        max(
            np.abs(freq - w).max(),
            np.abs(x.mean(0) - np.asarray(gmm.mean())).max(),
            np.abs(np.cov(x.T) - np.asarray(gmm.covariance())).max(),
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sde", default="vp", choices=sorted(SDES))
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    sde, gmm = SDES[args.sde], mixture()
    shape, key, score = (args.n, 2), jax.random.key(1), gmm.score_fn(sde)
    flow = sampling.get_ode_sampler(sde, shape, rtol=1e-7, atol=1e-7)
    reference, _ = jax.jit(flow, static_argnums=1)(key, score)
    rows = []
    for label, method, options in ROWS:
        deterministic = method not in ("em", "dpmpp_2m_sde") and not options.get("S_churn")
        if method == "em":
            s = sde_lib.get_sde(args.sde, **({} if args.sde != "ve" else {"sigma_max": 50.0}),
                                N=options["N"])  # fmt: skip
            sampler = sampling.get_pc_sampler(s, shape, "euler_maruyama", "none")
        elif method == "ode":
            sampler = sampling.get_ode_sampler(sde, shape)
        else:
            sampler = fast_sampling.get_sampler(sde, shape, method, **options)
        x, nfe = jax.jit(sampler, static_argnums=1)(key, score)
        row = {"sde": args.sde, "sampler": label, "nfe": int(nfe), "moments": moments_error(
            np.asarray(x, np.float64), gmm)}  # fmt: skip
        if deterministic and method != "ode":
            no_denoise = fast_sampling.get_sampler(sde, shape, method, denoise=False, **options)
            y, _ = jax.jit(no_denoise, static_argnums=1)(key, score)
            row["flow_rms"] = float(jnp.sqrt(jnp.mean(jnp.sum((y - reference) ** 2, -1))))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.markdown:
        print(f"\n| sampler ({args.sde}) | NFE | moment error | flow RMS |\n|---|---|---|---|")
        for r in rows:
            flow_rms = f"{r['flow_rms']:.3f}" if "flow_rms" in r else "—"
            print(f"| {r['sampler']} | {r['nfe']} | {r['moments']:.3f} | {flow_rms} |")


if __name__ == "__main__":
    main()
