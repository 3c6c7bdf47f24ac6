"""The one-file GPU benchmark, run as its CPU smoke (`bash benchmarks/gpu.sh --cpu_smoke`).

Timings are not asserted (benchmarks measure, tests do not); what is asserted is that every
figure the GPU run reports is present and sane, and one exact property of the train step: its
FLOPs (XLA's cost analysis) are those of a forward and a backward pass, 2.5-3.5 forwards, so the
step does no second loss evaluation or other duplicated network work.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.slow
def test_gpu_script_cpu_smoke_writes_every_figure(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": ""}  # one CPU device
    proc = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--cpu_smoke", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    head, ref = result["speed"][0], result["speed"][1]
    assert head["backend"] == "cpu" and head["mode"] == "cpu_smoke"
    assert ref["kind"] == "ref" and ref["dtype"] == "float32"
    for key in ("train_img_s", "forward_img_s", "lik_ms_per_nfe", "pc_s", "ode_s", "heun_s"):
        assert ref[key] > 0, key
    assert 0 < ref["mfu"] < 1 and ref["train_exec_bytes"] > 0
    assert ref["heun_nfe"] == 35 and ref["pc_nfe"] == ref["pc_steps"]
    head, ref = result["transformers"][0], result["transformers"][1]  # the DiT's row
    assert head["mode"] == "cpu_smoke" and ref["config"] == "digits/dit"
    for key in ("train_img_s", "forward_img_s", "lik_ms_per_nfe", "pc_s", "ode_s", "heun_s"):
        assert ref[key] > 0, key
    assert 0 < ref["mfu"] < 1
    step = result["train_step"]
    assert 2.5 < step["flops_step_over_forward"] < 3.5
    for key in ("step_over_forward_train", "step_over_forward_eval", "launcher_over_plain"):
        assert step[key] > 0, key
    assert result["seconds"] > 0


def test_gpu_script_refuses_unknown_argument():
    proc = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--quikc"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: unknown argument --quikc (use --out FILE, --cpu_smoke)"
    )


def test_likelihood_solvers_agree_with_the_ports_scipy_rk45():
    """Two independent adaptive solvers (diffrax Tsit5 on the device, scipy's RK45 as the port
    uses it) on the same probability-flow field give the same log p within their tolerance's
    reach and comparable NFE (a solver that stopped early or looped would not)."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/likelihood_solvers.py", "--batch", "8"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["max_abs_logp_diff_tsit5_vs_rk45_nats"] < 0.05
    assert 0.5 < out["nfe_tsit5_over_rk45"] < 2.0
    assert out["nfe_scipy_rk45"] > 20
