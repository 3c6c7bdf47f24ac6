"""What one training step costs, in forward passes of the same network and batch, and where it goes.

    python benchmarks/train_step.py [--config configs/vp/cifar10_ddpmpp_continuous.py] [--nf 32]
        [--batch 8] [--rounds 5] [--threads 1] [--breakdown]
    python benchmarks/train_step.py --cpu_smoke      # nf 16, 1 level, batch 2: checks it runs

Timed interleaved (A, B, C, ... per round, `--rounds` rounds, median), after compilation:
- forward_eval: one score evaluation s(x, t), train=False (what sampling and likelihood call);
- forward_train: the same with train=True (dropout on: the forward the loss differentiates);
- loss: the config's training loss (noise draw, forward_train, reduction), no gradient;
- value_and_grad: the loss and its gradient;
- step: `score_sde.run.train.train_step` under jit with the state donated (gradient, clipping,
  Adam, EMA, the metrics);
- launcher: what train mode dispatches per step (`Experiment.train_steps()`, one step per call).
Prints one JSON line: seconds per call, `step_over_forward_*` and `launcher_over_plain` ratios,
and the FLOPs of the step over those of forward_train (XLA's cost analysis of the compiled
executables: what the math costs, whatever the backend makes of it). `--breakdown` adds
milliseconds per step by kind of XLA operation (forward / backward convolution, weight-gradient
convolution, elementwise, reductions, random bits, transposes, matmuls, optimizer), read from a
`jax.profiler` trace of three steps (CPU: one trace event per XLA thunk).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # a script run from anywhere: the configs/ package

from benchmarks.vs_pytorch_cpu import limit_threads  # noqa: E402


def _computations(hlo: str) -> dict[str, list[str]]:
    """HLO text -> {computation name: its instruction lines}."""
    comps: dict[str, list[str]] = {}
    cur = None
    for line in hlo.splitlines():
        m = re.match(r"^(?:ENTRY )?%?([\w.\-]+) \(", line)
        if m and line.rstrip().endswith("{"):
            cur = comps.setdefault(m.group(1), [])
        elif cur is not None:
            cur.append(line)
    return comps


def kind_of(line: str, body: str) -> str:
    """The kind of one top-level XLA instruction (`line`) whose fused body is `body`."""
    names = " ".join(re.findall(r'op_name="([^"]+)"', line + body))
    backward = "transpose(" in names
    if "convolution(" in body:
        window = re.search(r"window=\{size=([\dx]+)", body)
        if window and int(window.group(1).split("x")[0]) > 3:
            return "conv weight-gradient"  # the activations as the window (XLA's dw form)
        return "conv backward (input gradient)" if backward else "conv forward"
    if "dot(" in body:
        return "matmul " + ("backward" if backward else "forward")
    if "threefry" in names or "random_bits" in names or "_bernoulli" in names:
        return "random bits"
    if "transpose" in line.split("=")[0] or "copy" in line.split("=")[0]:
        return "transpose / copy"
    if "adam" in names or "clip" in names or "apply_updates" in names or "ema" in names:
        return "optimizer / EMA"
    if "reduce(" in body:
        return "reduction " + ("backward" if backward else "forward")
    return "elementwise " + ("backward" if backward else "forward")


def breakdown(step, state, batch, reps: int = 3) -> dict[str, float]:
    """Milliseconds per call of the compiled `step(state, batch) -> (state, metrics)` (state
    donated) by kind of XLA operation (trace events named after the entry computation's
    instructions)."""
    import jax

    comps = _computations(step.as_text())
    entry = next(name for name in comps if name.startswith("main"))
    lines = {}
    for line in comps[entry]:
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = ", line)
        if m:
            lines[m.group(1)] = line
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d, create_perfetto_trace=True):
            for _ in range(reps):
                state = jax.block_until_ready(step(state, batch)[0])
        (path,) = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)
        with gzip.open(path) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    out: collections.Counter = collections.Counter()
    for e in events:
        line = lines.get(e.get("name", "")) if e.get("ph") == "X" else None
        if line is None:
            continue
        called = re.search(r"calls=%([\w.\-]+)", line)
        body = "\n".join(comps.get(called.group(1), [])) if called else line
        out[kind_of(line, body)] += e.get("dur", 0) / 1e3 / reps
    return {k: round(v, 2) for k, v in out.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/vp/cifar10_ddpmpp_continuous.py")
    parser.add_argument("--nf", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="CPU threads (default: all this process has)")
    parser.add_argument("--breakdown", action="store_true", help="ms per kind of XLA op")
    parser.add_argument(
        "--cpu_smoke", action="store_true", help="nf 16, 1 level, batch 2, 2 rounds"
    )
    args = parser.parse_args()
    if args.cpu_smoke:
        args.nf, args.batch, args.rounds = 16, 2, 2
    if args.threads:
        limit_threads(args.threads)  # before jax starts its pools

    import jax
    import numpy as np

    from benchmarks.speed import SMOKE_UNET, _flops
    from score_sde import config, parallel
    from score_sde.run import experiment, train

    overrides = {"model.nf": str(args.nf), "training.batch_size": str(args.batch)}
    if args.cpu_smoke:
        overrides |= {"model.num_res_blocks": "1", **SMOKE_UNET}
    cfg = config.load(os.path.join(ROOT, args.config), overrides)
    exp = experiment.build(cfg, parallel.make_mesh(1))
    loss_fn = exp.loss_fn(train=True)
    score, key = exp.score_apply, jax.random.key(1)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, *exp.shape)).astype(np.float32)
    t = np.full((args.batch,), 0.5, np.float32)
    batch = {"x": x}
    params = exp.new_state().params

    def compiled(fn, *args, **jit_kw):  # compiled once; also read for FLOPs and the HLO
        return jax.jit(fn, **jit_kw).lower(*args).compile()

    forward_eval = compiled(lambda p, x, t: score(p, x, t, train=False), params, x, t)
    forward_train = compiled(lambda p, x, t: score(p, x, t, train=True, rng=key), params, x, t)
    loss = compiled(lambda p, b: loss_fn(p, key, b), params, batch)
    value_and_grad = compiled(jax.value_and_grad(lambda p, b: loss_fn(p, key, b)), params, batch)
    rate = cfg.model.ema_rate
    plain = compiled(
        lambda s, b: train.train_step(s, b, loss_fn=loss_fn, tx=exp.tx, ema_rate=rate),
        exp.new_state(),
        batch,
        donate_argnums=0,
    )
    launcher = exp.train_steps()
    states = {"step": exp.new_state(), "launcher": exp.new_state()}

    def run_step(s, b):
        return plain(s, b)[0]

    def run_launcher(s, b):
        return launcher(s, [b])[0]

    calls = {
        "forward_eval": lambda: forward_eval(params, x, t),
        "forward_train": lambda: forward_train(params, x, t),
        "loss": lambda: loss(params, batch),
        "value_and_grad": lambda: value_and_grad(params, batch),
    }
    stepping = {"step": run_step, "launcher": run_launcher}
    times: dict[str, list[float]] = {name: [] for name in (*calls, *stepping)}
    for _ in range(args.rounds + 1):  # round 0 compiles and warms up
        for name, fn in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t0)
        for name, fn in stepping.items():
            t0 = time.perf_counter()
            states[name] = jax.block_until_ready(fn(states[name], batch))
            times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(v[1:]) for name, v in times.items()}
    step_flops, fwd_flops = _flops(plain), _flops(forward_train)
    out = {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "threads": args.threads or len(os.sched_getaffinity(0)),
        "config": args.config,
        "nf": args.nf,
        "batch": args.batch,
        "rounds": args.rounds,
        "s_per_call": {k: round(v, 5) for k, v in med.items()},
        "step_over_forward_train": round(med["step"] / med["forward_train"], 3),
        "step_over_forward_eval": round(med["step"] / med["forward_eval"], 3),
        "grad_over_forward_train": round(med["value_and_grad"] / med["forward_train"], 3),
        "launcher_over_plain": round(med["launcher"] / med["step"], 3),
        "flops_step_over_forward": (
            round(step_flops / fwd_flops, 3) if step_flops and fwd_flops else None
        ),
    }
    if args.breakdown:
        out["step_ms_by_kind"] = breakdown(plain, states["step"], batch)
        out["step_ms_traced"] = round(sum(out["step_ms_by_kind"].values()), 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
