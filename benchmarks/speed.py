"""Speed of the CIFAR-10 score networks on the local device: train, forward, likelihood, samplers.

    python benchmarks/speed.py --quick        # accelerator: 2 configs x fp32/bf16, < 10 min
    python benchmarks/speed.py                # 3 configs x fp32/bf16, batches (64, 128, 256, 512)
    python benchmarks/speed.py --cpu_smoke    # 2 CPU cores, ~3 min: checks that the script runs
    [--config vp/cifar10_ddpmpp_continuous ...] [--dtype float32 ...] [--batch 128]
    [--search 128,256] [--nf 32] [--set model.num_res_blocks=1 ...] [--budget_s 540]

Configs: vp/cifar10_ddpmpp_continuous, ve/cifar10_ncsnpp_continuous, vp/cifar10_ddpmpp_deep_continuous
(the published widths unless --nf), or any shipped config by --config (the transformers:
vp/cifar10_uvit_s2, vp/cifar10_dit_s2; a mode's U-Net overrides then do not apply, --set does),
dtype = config.model.dtype (compute dtype; params stay fp32).
One row per (config, dtype, batch), at --batch (128) and at the batch of the --search list with the
highest train img/s ('best'). Each row, on one device of a 1-device ('data',) mesh:
- train: one optimizer step (score_sde.run.train.train_step: the config's DSM loss, Adam, clipping,
  EMA; jit, state donated; the launcher's per-step executable), img/s and ms;
- mfu: the step's FLOPs (XLA cost_analysis of the compiled step) per second over the peak of a
  large bf16 matmul measured here (also fp32's peak, for reference); forward_mfu likewise;
- forward: one score evaluation s(x, t) (Experiment.score_apply), img/s;
- lik_ms_per_nfe: one evaluation of the probability-flow ODE's vector field with a Rademacher
  probe (likelihood.drift_and_divergence: drift + v^T J v from one jax.jvp);
- pc / ode / heun (batch-`--batch` rows only): Experiment's unconditional samplers of the config
  (PC over --pc_steps steps, i.e. config.model.num_scales = pc_steps for the SDE; the adaptive
  Tsit5 ODE at rtol = atol = 1e-5; EDM's Heun on 18 levels, 35 NFE) on the untrained network,
  wall seconds for the batch, ms per step / NFE.
  The untrained network's output layer is zero-initialized (score = 0), so the ODE's NFE is not a
  trained model's: read its ms per NFE;
- memory: the train step's executable (arguments + outputs + temporaries - aliased, from XLA's
  memory_analysis) and the device's peak_bytes_in_use so far (memory_stats(); a process-wide
  high-water mark, null where the backend has none, e.g. CPU).
Prints one JSON line per row (and a first line with the device and its peaks), then a table.
The batch-`--batch` rows of every (config, dtype) come first, then the searches and best rows;
parts that would start past --budget_s (seconds since start; --quick 420, so that the run ends
within 10 min) are reported as skipped instead of measured. --quick: DDPM++ and NCSN++ (cont.),
fp32 and bf16, search (128, 256), 5 calls x 3 rounds, PC over 32 steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a script run from anywhere: the configs/ package

CONFIGS = (
    "vp/cifar10_ddpmpp_continuous",
    "ve/cifar10_ncsnpp_continuous",
    "vp/cifar10_ddpmpp_deep_continuous",
)
DTYPES = ("float32", "bfloat16")
# --cpu_smoke's network: one resolution, no attention (checks the script, measures nothing)
SMOKE_UNET = {"model.ch_mult": "(1,)", "model.attn_resolutions": "()"}
HEUN_LEVELS = 18  # EDM's Heun on 18 noise levels: 35 NFE, EDM's CIFAR-10 budget
MODES = {
    # mode: configs, dtypes, batch, search, iters, pc_steps, budget_s, overrides
    "full": (CONFIGS, DTYPES, 128, (64, 128, 256, 512), 20, 1000, None, {}),
    "quick": (CONFIGS[:2], DTYPES, 128, (128, 256), 5, 32, 420.0, {}),
    "cpu_smoke": (
        CONFIGS[:1],
        DTYPES,
        4,
        (4, 8),
        2,
        4,
        300.0,
        {"model.nf": "16", "model.num_res_blocks": "1", **SMOKE_UNET},
    ),
}


def _median_s(fn, iters: int, rounds: int = 3) -> float:
    """Median over `rounds` of the mean seconds per call of fn() over `iters` calls (after one
    warm-up call); fn returns something to block on."""
    jax.block_until_ready(fn())
    per = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(iters):
            out = fn()
        jax.block_until_ready(out)
        per.append((time.perf_counter() - t) / iters)
    return statistics.median(per)


def _flops(compiled) -> float | None:
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def _exec_bytes(compiled) -> int | None:
    """Arguments + outputs + temporaries - aliased (donated) bytes of an executable."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if m is None:
        return None
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def _device_peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else stats.get("peak_bytes_in_use")


def matmul_peak(dtype, n: int, iters: int) -> float:
    """FLOP/s of an n x n x n matmul in `dtype` (2 n^3 FLOPs per call)."""
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    mm = jax.jit(lambda a, b: a @ b)
    return 2.0 * n**3 / _median_s(lambda: mm(a, b), iters)


def _is_oom(e: Exception) -> bool:
    return "RESOURCE_EXHAUSTED" in str(e) or "out of memory" in str(e).lower()


class Bench:
    """The measurements of one (config, dtype) at any batch."""

    def __init__(self, name: str, dtype: str, overrides: dict, args):
        from score_sde import config as config_lib
        from score_sde import parallel
        from score_sde.run import experiment

        self.name, self.dtype, self.args = name, dtype, args
        self.overrides = {**overrides, "model.dtype": dtype}
        self.cfg = config_lib.load(name, self.overrides)
        self.exp = experiment.build(self.cfg, parallel.make_mesh(1))
        self.state = self.exp.new_state()  # the params every measurement uses (untrained)
        self.trains: dict[int, dict] = {}

    def _x(self, batch: int, seed: int = 0):
        return jax.random.uniform(jax.random.key(seed), (batch, *self.exp.shape), minval=-1.0)

    def train(self, batch: int) -> dict:
        """Train img/s, FLOPs, MFU inputs and executable bytes at `batch` (cached)."""
        if batch in self.trains:
            return self.trains[batch]
        from score_sde.run import train

        exp = self.exp
        loss_fn = exp.loss_fn(train=True)
        rate = self.cfg.model.ema_rate
        step = jax.jit(
            lambda s, b: train.train_step(s, b, loss_fn=loss_fn, tx=exp.tx, ema_rate=rate),
            donate_argnums=0,
        )
        state = jax.tree.map(jnp.copy, self.state)  # donated below; self.state stays usable
        batch_d = {"x": self._x(batch)}
        t0 = time.perf_counter()
        compiled = step.lower(state, batch_d).compile()
        compile_s = time.perf_counter() - t0
        holder = [state]

        def one():
            holder[0], metrics = compiled(holder[0], batch_d)
            return metrics["loss"]

        s = _median_s(one, self.args.iters)
        out = {
            "train_img_s": batch / s,
            "train_ms": 1e3 * s,
            "train_flops": _flops(compiled),
            "train_compile_s": compile_s,
            "train_exec_bytes": _exec_bytes(compiled),
        }
        self.trains[batch] = out
        return out

    def forward(self, batch: int) -> dict:
        x, t = self._x(batch, 1), jnp.full((batch,), 0.5)
        compiled = jax.jit(self.exp.score_apply).lower(self.state.params, x, t).compile()
        s = _median_s(lambda: compiled(self.state.params, x, t), self.args.iters)
        return {
            "forward_img_s": batch / s,
            "forward_ms": 1e3 * s,
            "forward_flops": _flops(compiled),
        }

    def likelihood(self, batch: int) -> dict:
        from score_sde import likelihood

        exp = self.exp

        def vector_field(params, x, probe):
            rsde = exp.sde.reverse(exp.score_fn(params), probability_flow=True)
            drift = lambda y, s: rsde.sde(y, jnp.full((y.shape[0],), s, y.dtype))[0]
            return likelihood.drift_and_divergence(drift, x, 0.5, probe)

        x = self._x(batch, 2)
        probe = jax.random.rademacher(jax.random.key(3), x.shape, x.dtype)
        compiled = jax.jit(vector_field).lower(self.state.params, x, probe).compile()
        s = _median_s(lambda: compiled(self.state.params, x, probe), self.args.iters)
        return {"lik_ms_per_nfe": 1e3 * s}

    def samplers(self, batch: int) -> dict:
        """PC over pc_steps steps, the adaptive ODE and EDM's Heun on 18 levels (35 NFE), one
        batch each (the second call timed)."""
        from score_sde.run import experiment

        out = {}
        pc_exp = dataclasses.replace(
            self.exp, sde=dataclasses.replace(self.exp.sde, N=self.args.pc_steps)
        )
        cfg = self.exp.cfg
        heun_cfg = dataclasses.replace(
            cfg, sampling=dataclasses.replace(cfg.sampling, num_steps=HEUN_LEVELS)
        )
        heun_exp = dataclasses.replace(self.exp, cfg=heun_cfg)
        for method, exp in (("pc", pc_exp), ("ode", self.exp), ("heun", heun_exp)):
            run = experiment.unconditional_sampler(exp, method, batch)
            key = jax.random.key(4)
            t0 = time.perf_counter()
            jax.block_until_ready(run(self.state.ema_params, key))
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, nfe = jax.block_until_ready(run(self.state.ema_params, key))
            s, nfe = time.perf_counter() - t0, int(nfe)
            out[f"{method}_s"] = s
            out[f"{method}_nfe"] = nfe
            out[f"{method}_compile_s"] = max(first - s, 0.0)
            if method == "pc":
                out["pc_steps"] = self.args.pc_steps
                out["pc_ms_per_step"] = 1e3 * s / self.args.pc_steps
            out[f"{method}_ms_per_nfe"] = 1e3 * s / max(nfe, 1)
        return out


def row(bench: Bench, batch: int, kind: str, peaks: dict, *, samplers: bool, over) -> dict:
    """One row at `batch`; over() -> True past the time budget (later parts are skipped)."""
    r = {"config": bench.name, "dtype": bench.dtype, "batch": batch, "kind": kind}
    r.update(bench.train(batch))
    r.update(bench.forward(batch))
    parts = [("likelihood", bench.likelihood)] + (
        [("samplers", bench.samplers)] if samplers else []
    )
    for part, measure in parts:
        if over():
            r[part] = "skipped (budget)"
        else:
            r.update(measure(batch))
    peak = peaks["peak_bf16_flop_s"]
    r["mfu"] = r["train_flops"] * r["train_img_s"] / batch / peak if r["train_flops"] else None
    if r["forward_flops"]:
        r["forward_mfu"] = r["forward_flops"] * r["forward_img_s"] / batch / peak
        r["train_over_forward_flops"] = (r["train_flops"] or 0) / r["forward_flops"]
    r["device_peak_bytes"] = _device_peak_bytes()
    return r


def _rounded(r: dict) -> dict:
    out = {}
    for k, v in r.items():
        if isinstance(v, float):
            v = float(f"{v:.4g}") if abs(v) < 1e4 else round(v)
        out[k] = v
    return out


TABLE = (
    ("config", "config", 34),
    ("dtype", "dtype", 8),
    ("batch", "batch", 5),
    ("kind", "kind", 5),
    ("train_img_s", "train img/s", 11),
    ("mfu", "MFU", 7),
    ("forward_img_s", "fwd img/s", 10),
    ("lik_ms_per_nfe", "lik ms/NFE", 10),
    ("pc_ms_per_step", "PC ms/step", 10),
    ("ode_ms_per_nfe", "ODE ms/NFE", 10),
    ("ode_nfe", "ODE NFE", 7),
    ("heun_s", "Heun35 s", 8),
    ("train_exec_bytes", "step GiB", 8),
    ("device_peak_bytes", "peak GiB", 8),
)


def _cell(key: str, v) -> str:
    if v is None:
        return "-"
    if key.endswith("_bytes"):
        return f"{v / 2**30:.2f}"
    if key == "mfu":
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[dict]) -> str:
    lines = [" ".join(f"{h:>{w}}" for _, h, w in TABLE)]
    for r in rows:
        if "status" in r:
            head = " ".join(f"{_cell(k, r.get(k)):>{w}}" for k, _, w in TABLE[:4])
            lines.append(f"{head} {r['status']}")
            continue
        lines.append(" ".join(f"{_cell(k, r.get(k)):>{w}}" for k, _, w in TABLE))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="accelerator, < 10 min")
    parser.add_argument("--cpu_smoke", action="store_true", help="2 CPU cores, ~3 min")
    parser.add_argument("--config", action="append", help="shipped config name (repeatable)")
    parser.add_argument("--dtype", action="append", choices=DTYPES)
    parser.add_argument("--batch", type=int, help="the reference batch (default 128)")
    parser.add_argument("--search", help="comma list of batches for the best-throughput row")
    parser.add_argument("--iters", type=int, help="calls per timed round (3 rounds, median)")
    parser.add_argument("--pc_steps", type=int, help="PC sampler steps (num_scales of its SDE)")
    parser.add_argument("--nf", type=int, help="override config.model.nf")
    parser.add_argument("--set", action="append", default=[], help="section.field=value")
    parser.add_argument("--budget_s", type=float, help="skip rows after this many seconds")
    parser.add_argument("--no_samplers", action="store_true")
    args = parser.parse_args()

    mode = "cpu_smoke" if args.cpu_smoke else "quick" if args.quick else "full"
    configs, dtypes, batch, search, iters, pc_steps, budget, overrides = MODES[mode]
    configs = tuple(args.config or configs)
    dtypes = tuple(args.dtype or dtypes)
    args.batch = args.batch or batch
    search = tuple(int(b) for b in args.search.split(",")) if args.search else search
    args.iters = args.iters or iters
    args.pc_steps = args.pc_steps or pc_steps
    budget = args.budget_s if args.budget_s is not None else budget
    # a mode's overrides shrink its own configs (U-Net fields); other --config's take --set only
    overrides = dict(overrides) if not args.config else {}
    if args.nf:
        overrides["model.nf"] = str(args.nf)
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--set {item!r}: expected section.field=value, e.g. model.nf=64")
        overrides[key] = value

    from score_sde.config import ModelConfig

    has_dtype = "dtype" in {f.name for f in dataclasses.fields(ModelConfig)}
    start = time.perf_counter()
    cpu = jax.default_backend() == "cpu"
    n = 1024 if cpu else 8192
    peaks = {
        "peak_bf16_flop_s": matmul_peak(jnp.bfloat16, n, 2 if cpu else 20),
        "peak_f32_flop_s": matmul_peak(jnp.float32, n, 2 if cpu else 20),
    }
    head = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "mode": mode,
        "matmul_n": n,
        **{k: f"{v / 1e12:.4g} TFLOP/s" for k, v in peaks.items()},
        "overrides": overrides,
    }
    print(json.dumps(head), flush=True)

    rows = []

    def emit(r):
        r = _rounded(r)
        rows.append(r)
        print(json.dumps(r), flush=True)

    def over_budget() -> bool:
        return budget is not None and time.perf_counter() - start > budget

    # Phase 1: the batch-`--batch` rows of every (config, dtype); phase 2: the batch searches and
    # their best rows (what --budget_s drops first).
    benches = []
    for name in configs:
        for dtype in dtypes:
            base = {"config": name, "dtype": dtype, "batch": args.batch, "kind": "ref"}
            if dtype != "float32" and not has_dtype:
                emit({**base, "status": "unsupported (no config.model.dtype)"})
                continue
            if over_budget():
                emit({**base, "status": f"skipped (past --budget_s {budget:g})"})
                continue
            bench = Bench(name, dtype, overrides, args)
            emit(
                row(
                    bench, args.batch, "ref", peaks, samplers=not args.no_samplers, over=over_budget
                )
            )
            benches.append(bench)
    for bench in benches:
        base = {"config": bench.name, "dtype": bench.dtype, "batch": args.batch, "kind": "best"}
        best, best_img_s = args.batch, bench.train(args.batch)["train_img_s"]
        for b in search:
            if b == args.batch or over_budget():
                continue
            try:
                img_s = bench.train(b)["train_img_s"]
            except Exception as e:  # only out-of-memory ends the search
                if not _is_oom(e):
                    raise
                break
            if img_s > best_img_s:
                best, best_img_s = b, img_s
        searched = sorted(set(bench.trains))
        if best == args.batch:
            emit({**base, "status": f"= ref (searched {searched})"})
        elif over_budget():
            emit({**base, "batch": best, "status": f"skipped (budget; searched {searched})"})
        else:
            emit(row(bench, best, "best", peaks, samplers=False, over=over_budget))

    print(f"\n{head['device']} ({mode}, {time.perf_counter() - start:.0f} s in all)")
    print(table(rows))


if __name__ == "__main__":
    main()
