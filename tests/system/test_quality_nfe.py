"""benchmarks/quality_nfe.py end to end on its toy path (in-process, seconds): every sampler with
the exact score of the 2-D mixture, at its largest budget, lands within the Monte-Carlo spread of
the sliced Wasserstein distance between two independent samples of the mixture; few-step cells are
measurably worse; the JSON, PNG and table hold one row per (sampler, budget) with the NFE each
sampler's formula gives.

Measured (2,048 samples, the `small` grid, CPU): the floor's 95th percentile over 20 independent
pairs is 0.128 (bound 1.5 x that = 0.19); each sampler's largest budget gives 0.014-0.125 (the
deterministic ones, which map the same prior draws, all about 0.11); EDM Heun at 4 steps (7 NFE)
1.76, DPM-Solver++ 3M at 5 steps 0.46. About 15 s, mostly compiling the 14 cells.
"""

import importlib.util
import json
import sys

import jax
import numpy as np
import pytest

from tests.helpers import ROOT

SAMPLES = 2048


def _load_benchmark():
    """benchmarks/ is not a package: the script's module by path (registered in sys.modules
    first, as its dataclass needs)."""
    if "quality_nfe" not in sys.modules:
        path = ROOT / "benchmarks/quality_nfe.py"
        spec = importlib.util.spec_from_file_location("quality_nfe", path)
        sys.modules["quality_nfe"] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["quality_nfe"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    qn = _load_benchmark()
    out = tmp_path_factory.mktemp("quality_nfe")
    argv = ["--toy", "--samples", str(SAMPLES), "--grid", "small", "--out", str(out)]
    return qn, qn.main(argv), out


@pytest.fixture(scope="module")
def bound(run) -> float:
    """1.5 x the 95th percentile of the sliced W2 between two independent mixture samples of
    SAMPLES (20 pairs): the Monte-Carlo spread a perfect sampler stays within."""
    qn = run[0]
    gmm = qn.mixture()
    draw = lambda i: np.asarray(gmm.sample(jax.random.key(100 + i), SAMPLES))
    floors = [qn.sliced_wasserstein(draw(2 * i), draw(2 * i + 1)) for i in range(20)]
    return 1.5 * float(np.quantile(floors, 0.95))


def test_sliced_wasserstein_of_a_shift():
    """x against x + (c, 0): every 1-D projection is shifted by c cos(theta), so
    SW2 = c sqrt(E cos^2) = c / sqrt(2) over uniform directions (256 of them: within 10%)."""
    qn = _load_benchmark()
    x = np.random.default_rng(0).normal(size=(500, 2))
    assert qn.sliced_wasserstein(x, x) == 0.0
    sw = qn.sliced_wasserstein(x, x + np.array([0.5, 0.0]))
    assert abs(sw - 0.5 / np.sqrt(2)) < 0.05, sw
    with pytest.raises(ValueError, match="one shape"):
        qn.sliced_wasserstein(x, x[:10])


def test_every_sampler_reaches_the_monte_carlo_floor(run, bound):
    qn, result, _ = run
    assert result["floor"]["distance"] < bound
    methods = list(dict.fromkeys(m for m, _ in qn.GRIDS["small"]))
    assert set(methods) == set(qn.LABELS) - {"consistency"}  # that one is a consistency model's
    for method in methods:
        rows = [r for r in result["rows"] if r["method"] == method]
        best = rows[-1] if method != "ode" else min(rows, key=lambda r: r["budget"])
        assert best["distance"] < bound, (method, best, bound)


def test_few_steps_are_measurably_worse(run, bound):
    """The measure tells samplers apart: Heun at 4 steps and 3M at 5 are far above the floor."""
    _, result, _ = run
    cells = {(r["method"], r["budget"]): r["distance"] for r in result["rows"]}
    assert cells["edm_heun", 4] > 5 * bound and cells["dpmpp_3m", 5] > 2 * bound, cells


def test_writes_one_row_per_sampler_and_budget(run):
    qn, result, out = run
    grid = qn.GRIDS["small"]
    saved = json.loads((out / "quality_nfe_toy.json").read_text())
    assert [(r["method"], r["budget"]) for r in saved["rows"]] == list(grid)
    assert saved["samples"] == SAMPLES and saved["floor"] == result["floor"]
    nfe = {"pc": lambda n: n, "pc_langevin": lambda n: 2 * n, "edm_heun": lambda n: 2 * (n - 1) + 1,
           "dpmpp_2m": lambda n: n, "dpmpp_3m": lambda n: n + 1, "ddim": lambda n: n}  # fmt: skip
    for r in saved["rows"]:
        if r["method"] in nfe:
            assert r["nfe"] == nfe[r["method"]](r["budget"]), r
        else:  # the adaptive ODE: more evaluations at the tighter tolerance
            assert r["nfe"] > 10
    ode = sorted((r for r in saved["rows"] if r["method"] == "ode"), key=lambda r: -r["budget"])
    assert ode[0]["nfe"] < ode[-1]["nfe"], ode
    png = (out / "quality_nfe_toy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    table = qn.markdown(saved).splitlines()
    assert sum(line.startswith("| ") for line in table) == len(grid) + 2  # header + floor
