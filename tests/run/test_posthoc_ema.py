"""`python -m score_sde.phema` (run/posthoc_ema.py): --help, and bad input as one `error:` line
naming the flag, exit status 2, nothing written. The reconstruction itself is tested through the
launcher in tests/system/test_phema_run.py."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from score_sde.config import from_config
from score_sde.run import experiment, posthoc_ema
from score_sde.store import phema_files
from tests.helpers import assert_one_clear_line, snapshot, tiny_config


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A work directory with the tiny config and zero snapshots of 0.05 and 0.1 at steps 10, 20
    (what the planner reads; nothing is trained)."""
    root = tmp_path_factory.mktemp("posthoc") / "run"
    cfg = from_config(tiny_config("launch", **{"training.phema_stds": (0.05, 0.1)}))
    like = experiment.build(cfg).state_like().ema_params
    zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), like)
    for step in (10, 20):
        for std in (0.05, 0.1):
            phema_files.write(str(root), step, std, zeros)
    (root / "config.json").write_text(json.dumps(cfg.to_dict()))
    return root


def _main(capsys, *argv) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        posthoc_ema.main(list(argv))
    out, err = capsys.readouterr()
    return int(e.value.code or 0), out, err


def test_help_prints_the_usage_and_exits_0(capsys):
    code, out, _ = _main(capsys, "--help")
    assert code == 0 and out.startswith("usage: python -m score_sde.phema")
    for flag in ("--workdir", "--std", "--out", "--step"):
        assert flag in out


def test_the_plan_reads_the_snapshots_up_to_the_step(workdir, tmp_path):
    p = posthoc_ema.plan(str(workdir), [0.08, 0.2], str(tmp_path / "out"), step=10)
    assert p.step == 10 and [(s.step, s.std) for s in p.snapshots] == [(10, 0.05), (10, 0.1)]
    assert p.weights.shape == (2, 2) and p.outs[1].endswith("out/std-0.2")
    assert posthoc_ema.plan(str(workdir), [0.08], str(tmp_path / "out")).step == 20
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--std=0.08", "--out={out}"], ["--workdir", "required"]),
        (["--workdir={run}", "--out={out}"], ["--std", "required"]),
        (["--workdir={run}", "--std=0.08"], ["--out", "required"]),
        (["--workdir={run}", "--std=big", "--out={out}"], ["--std", "big"]),
        (["--workdir={run}", "--std=0.3", "--out={out}"], ["--std 0.3", "(0, 0.2887)"]),
        (["--workdir={run}", "--std=0.08", "--out={out}", "--step=15"], ["--step 15", "[10, 20]"]),
        (["--workdir={out}", "--std=0.08", "--out={out}"], ["--workdir", "no config.json"]),
        (["--workdir={bare}", "--std=0.08", "--out={out}"], ["--workdir", "phema_stds"]),
        (["--workdir={run}", "--std=0.08", "--out={full}"], ["--out", "not empty"]),
        (["--workdir={run}", "--std=0.08", "--out={out}", "--eta=1"], ["--eta"]),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("-") else None,
)
def test_bad_input_is_one_line_naming_the_flag_and_nothing_is_written(
    workdir, tmp_path, capsys, args, needles
):
    bare = tmp_path / "bare"  # a run without snapshots
    bare.mkdir()
    (bare / "config.json").write_text((workdir / "config.json").read_text())
    full = tmp_path / "full"
    (full / "std-0.08").mkdir(parents=True)
    (full / "std-0.08" / "x").write_text("kept")
    paths = {"run": workdir, "out": tmp_path / "out", "bare": bare, "full": full}
    before, run_before = snapshot(tmp_path), snapshot(workdir)
    code, out, err = _main(capsys, *(a.format(**paths) for a in args))
    assert code == 2 and out == "", out
    assert_one_clear_line(err)
    assert err.startswith("error: ")
    for needle in needles:
        assert needle in err, err
    assert snapshot(tmp_path) == before and snapshot(workdir) == run_before
    assert not (tmp_path / "out").exists()
