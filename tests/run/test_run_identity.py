"""Run identity: every checkpoint records the run that wrote it (run id, seed, the model/SDE/data
fields), so a resumed run never silently mixes two. Faults as an operator makes them: `cp -r` of
another run's checkpoint (same config, another seed), a resume with a changed model field; and
what stays allowed: changing the number of steps (logged), resuming on purpose with the flag, an
old checkpoint without an identity."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from score_sde.run import identity, modes
from score_sde.store import checkpoint
from tests.helpers import REPO, dir_listing, tiny_config, tiny_flags


def _train(workdir, seed: int, **more):
    config = tiny_config("checkpoint", **more)
    config.seed = seed
    out = io.StringIO()
    modes.run("train", config, str(workdir), stream=out)
    return out.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs of the same config, seeds 0 and 1 (do not modify: tests copy them)."""
    root = tmp_path_factory.mktemp("identity")
    _train(root / "a", seed=0)
    _train(root / "b", seed=1)
    return root


def _doc(step_dir) -> dict:
    return json.loads((step_dir / checkpoint.CHECKSUM_ITEM / "metadata").read_text())


@pytest.mark.slow
def test_every_checkpoint_records_its_run(runs):
    rid = json.loads((runs / "a" / identity.RUN_FILE).read_text())["run_id"]
    ids = []
    for d in ("checkpoints/10", "checkpoints/20", "checkpoints/24", "checkpoints-meta/16"):
        run = _doc(runs / "a" / d)["run"]
        assert run["run_id"] == rid and run["seed"] == 0, d
        assert run["fields"]["model.nf"] == 16 and run["fields"]["training.sde"] == "vpsde"
        ids.append(run["config_hash"])
    assert len(set(ids)) == 1
    other = _doc(runs / "b" / "checkpoints" / "24")["run"]
    assert other["run_id"] != rid and other["seed"] == 1 and other["config_hash"] != ids[0]


def _with_foreign_newest(runs, tmp_path):
    """Run a, whose newest checkpoint was replaced by `cp -r` of run b's step 24."""
    workdir = tmp_path / "a"
    shutil.copytree(runs / "a", workdir)
    shutil.rmtree(workdir / "checkpoints" / "24")
    shutil.copytree(runs / "b" / "checkpoints" / "24", workdir / "checkpoints" / "24")
    return workdir


@pytest.mark.slow
def test_another_runs_checkpoint_is_refused_with_one_line(runs, tmp_path):
    workdir = _with_foreign_newest(runs, tmp_path)
    before = dir_listing(workdir)
    proc = subprocess.run(
        [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={workdir}",
         *tiny_flags(seed=0, **{"training.n_iters": 28})],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    a = json.loads((workdir / identity.RUN_FILE).read_text())["run_id"]
    b = _doc(runs / "b" / "checkpoints" / "24")["run"]["run_id"]
    for needle in (
        f"error: refusing to resume from checkpoint {workdir}/checkpoints/24",
        f"written by run {b} (seed 1), not by this work directory's run {a} (seed 0)",
        "its config differs in seed: 1 in the checkpoint, 0 now",
        identity.ALLOW,
    ):
        assert needle in lines[0], (needle, lines[0])
    assert dir_listing(workdir) == before  # nothing written, moved or removed


@pytest.mark.slow
def test_the_flag_resumes_from_it_on_purpose(runs, tmp_path):
    workdir = _with_foreign_newest(runs, tmp_path)
    more = {"training.n_iters": 28, "training.allow_foreign_checkpoint": True}
    out = _train(workdir, seed=0, **more)
    assert f"resuming from {workdir}/checkpoints/24 on purpose ({identity.ALLOW})" in out
    assert "resumed from step 24" in out
    a = json.loads((workdir / identity.RUN_FILE).read_text())["run_id"]
    assert _doc(workdir / "checkpoints" / "28")["run"]["run_id"] == a  # this run's from now on


@pytest.mark.slow
def test_a_changed_model_field_is_refused_and_a_changed_step_count_logged(runs, tmp_path):
    workdir = tmp_path / "a"
    shutil.copytree(runs / "a", workdir)
    before = dir_listing(workdir)
    with pytest.raises(ValueError) as e:  # same shapes: only the identity can tell
        _train(workdir, seed=0, **{"model.beta_max": 15.0, "training.n_iters": 28})
    assert "its config differs in model.beta_max: 20.0 in the checkpoint, 15.0 now" in str(e.value)
    assert "not by this work directory's run" not in str(e.value)  # the same run
    assert dir_listing(workdir) == before
    out = _train(workdir, seed=0, **{"training.n_iters": 28})
    changed = [line for line in out.splitlines() if line.startswith("resumed with a changed")]
    assert changed == ["resumed with a changed field: training.n_iters: 24 -> 28"]
    assert "resumed from step 24" in out


@pytest.mark.slow
def test_a_checkpoint_without_identity_is_adopted(runs, tmp_path):
    """Checkpoints written before run ids (and converted published ones) carry none: the run
    resumes, keeps its run.json (or makes one) and records its identity from then on."""
    workdir = tmp_path / "a"
    shutil.copytree(runs / "a", workdir)
    os.remove(workdir / identity.RUN_FILE)
    for step in ("10", "20", "24"):
        path = workdir / "checkpoints" / step / checkpoint.CHECKSUM_ITEM / "metadata"
        doc = json.loads(path.read_text())
        del doc["run"]
        path.write_text(json.dumps(doc))
    out = _train(workdir, seed=0, **{"training.n_iters": 28})
    assert "resumed from step 24" in out
    rid = json.loads((workdir / identity.RUN_FILE).read_text())["run_id"]
    assert _doc(workdir / "checkpoints" / "28")["run"]["run_id"] == rid


def test_changed_fields_lists_each_difference():
    before = {"seed": 0, "training": {"n_iters": 24, "log_freq": 10}, "model": {"nf": 8}}
    after = {"seed": 0, "training": {"n_iters": 48, "log_freq": 10}, "model": {"nf": 8}}
    assert identity.changed_fields(before, after) == ["training.n_iters: 24 -> 48"]
    assert identity.changed_fields(after, after) == []
    assert (
        identity.changed_fields({"eval": {"samplers": ["pc"]}}, {"eval": {"samplers": ("pc",)}})
        == []
    )
