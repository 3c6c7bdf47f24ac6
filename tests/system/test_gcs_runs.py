"""Training runs whose work directory is a bucket on a real GCS server (the `bucket` fixture:
fake-gcs-server on 127.0.0.1; orbax writes through TensorStore's GCS driver, the rest through
gcsfs), each against a local twin with the same flags: the restored arrays equal bit for bit.

Guarantees held on gs:// here: train and resume to more steps, keep-last-N, a damaged or deleted
newest checkpoint (fallback, quarantine, one line each, no traceback, the run finishes), a
misnamed step, SIGTERM (exit 143, resumes) and SIGKILL (resumed == uninterrupted), an eval job
watching a training run, and the metrics of both in one log.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time

import fsspec
import jax
import numpy as np
import pytest

from score_sde import parallel
from score_sde.config import from_config
from score_sde.run import experiment, modes
from score_sde.store import checkpoint, fs, metrics_log
from score_sde.store.checkpoint._read import read_step
from tests.helpers import OVERRIDES, REPO, tiny_config, train_until_signal

# Besides the one line per problem, none of orbax's or gcsfs's noise may reach the terminal.
NOISE = ("Traceback", "Future exception", "Event loop is closed", "Exception ignored", "ERROR")


def _train(workdir: str, **more) -> str:
    out = io.StringIO()
    modes.run("train", tiny_config("checkpoint", **more), workdir, stream=out)
    return out.getvalue()


def _gcs():
    return fsspec.filesystem("gs")


@pytest.fixture(scope="module")
def exp():
    return experiment.build(from_config(tiny_config("checkpoint")), parallel.make_mesh())


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The tiny run trained on a local disk (do not modify): its work directory."""
    workdir = str(tmp_path_factory.mktemp("gcs_twin") / "run")
    _train(workdir)
    return workdir


def _states(workdir: str, like) -> dict[str, object]:
    """{'<kind>/<step>': host state} of every checkpoint of `workdir` (local or gs://)."""
    out = {}
    with checkpoint.Checkpoints(workdir, read_only=True) as ckpts:
        for kind, manager in (("checkpoints", ckpts.snapshots), ("meta", ckpts.preemption)):
            for step in manager.all_steps():
                path = os.path.join(str(manager.directory), str(step))
                out[f"{kind}/{step}"] = parallel.to_host(read_step(path, like)[0])
    return out


def _assert_same_states(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        la, lb = jax.tree.leaves(a[key]), jax.tree.leaves(b[key])
        assert len(la) == len(lb)
        for u, v in zip(la, lb, strict=True):
            np.testing.assert_array_equal(u, v, err_msg=key)


def _upload(local: str, url: str) -> None:
    _gcs().put(local.rstrip("/") + "/", url.rstrip("/") + "/", recursive=True)
    _gcs().invalidate_cache()


def _largest_data_file(step_url: str) -> str:
    files = [f for f in fs.files_under(step_url) if "/d/" in f]
    assert files, step_url
    return max(files, key=lambda f: _gcs().size(f))


def _truncate(step_url: str) -> None:
    f = _largest_data_file(step_url)
    data = _gcs().cat(f)
    _gcs().pipe(f, data[: len(data) // 3])


def _delete(step_url: str) -> None:
    _gcs().rm(_largest_data_file(step_url))


def test_train_resume_and_retention_on_gs_equal_a_local_twin(bucket, tmp_path, exp):
    gs, local = f"{bucket}/run", str(tmp_path / "run")
    for w in (gs, local):
        _train(w, **{"training.keep_checkpoints": 2})
    _assert_same_states(_states(gs, exp.state_like()), _states(local, exp.state_like()))
    assert sorted(_states(gs, exp.state_like())) == ["checkpoints/20", "checkpoints/24", "meta/16"]
    for name in ("config.json",):
        assert fs.path(f"{gs}/{name}").read_text() == fs.path(f"{local}/{name}").read_text()

    for w in (gs, local):  # resumed to more steps
        out = _train(w, **{"training.keep_checkpoints": 2, "training.n_iters": 32})
        assert "resumed from step 24" in out
    states = _states(gs, exp.state_like())
    _assert_same_states(states, _states(local, exp.state_like()))
    assert "checkpoints/32" in states
    steps = [[r["step"] for r in metrics_log.read(w) if "training_loss" in r] for w in (gs, local)]
    assert steps[0] == steps[1] and steps[0][-1] == 32


@pytest.mark.parametrize("damage, reason", [(_truncate, "unreadable"), (_delete, "unreadable")])
def test_a_damaged_newest_checkpoint_on_gs_is_skipped_moved_aside_and_rewritten(
    damage, reason, bucket, local_run, exp, capfd
):
    gs = f"{bucket}/run"
    _upload(local_run, gs)
    damage(f"{gs}/checkpoints/24")
    capfd.readouterr()
    out = _train(gs)  # the same command again: resumes from 20, writes 24 anew
    err = capfd.readouterr().err
    assert "resumed from step 20" in out
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 2, err
    assert lines[0].startswith(f"warning: skipped checkpoint {gs}/checkpoints/24: {reason}")
    assert lines[1].startswith(f"warning: moved the damaged checkpoint {gs}/checkpoints/24")
    assert f"{gs}/{checkpoint.DAMAGED_DIR}/checkpoints/24" in lines[1]
    for noise in NOISE:
        assert noise not in err
    # the rewritten step is the uninterrupted run's; the damaged copy is kept aside
    want = _states(local_run, exp.state_like())
    _assert_same_states(_states(gs, exp.state_like()), want)
    assert fs.path(f"{gs}/{checkpoint.DAMAGED_DIR}/checkpoints/24").is_dir()

    again = _train(gs)  # and every later run finds nothing to warn about
    assert "resumed from step 24" in again
    assert "warning" not in capfd.readouterr().err


def test_a_misnamed_step_on_gs_is_skipped(bucket, local_run, exp):
    gs = f"{bucket}/run"
    _upload(local_run, gs)
    _gcs().copy(f"{gs}/checkpoints/20/", f"{gs}/checkpoints/30/", recursive=True)
    _gcs().invalidate_cache()
    lines = []
    with checkpoint.Checkpoints(gs, read_only=True, warn=lines.append) as ckpts:
        state = ckpts.restore(exp.state_like())
        assert ckpts.last_restored_step == 24 and int(state.step) == 24
    assert len(lines) == 1 and "its name says step 30" in lines[0], lines


@pytest.mark.slow
def test_sigkill_and_sigterm_on_gs_resume_to_the_uninterrupted_run(bucket, local_run, exp):
    killed = f"{bucket}/killed"
    run = train_until_signal(killed, "SIGKILL", 14)
    assert run.returncode == -9, run.stderr[-3000:]
    resumed = subprocess.run(
        [sys.executable, "launch.py", "--config", "configs/toy/gmm.py", f"--workdir={killed}"]
        + [f"--config.{k}={v}" for k, v in OVERRIDES.items()],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stdout
    want = _states(local_run, exp.state_like())
    got = _states(killed, exp.state_like())
    _assert_same_states(
        {k: got[k] for k in want if k.startswith("checkpoints/")},
        {k: v for k, v in want.items() if k.startswith("checkpoints/")},
    )

    termed = f"{bucket}/termed"
    run = train_until_signal(termed, "SIGTERM", 9)
    assert run.returncode == 143, run.stderr[-3000:]
    assert "SIGTERM: saved a preemption checkpoint at step 10" in run.stdout
    for noise in NOISE:
        assert noise not in run.stderr
    _assert_same_states(
        {"10": _states(termed, exp.state_like())["checkpoints/10"]},
        {"10": want["checkpoints/10"]},
    )
    out = _train(termed)  # the same command resumes to the uninterrupted run
    assert "resumed from step 10" in out
    got = _states(termed, exp.state_like())
    assert {k: got[k] for k in got if k.startswith("checkpoints/")}.keys() == {
        k for k in want if k.startswith("checkpoints/")
    }
    _assert_same_states(
        {k: got[k] for k in want if k.startswith("checkpoints/")},
        {k: v for k, v in want.items() if k.startswith("checkpoints/")},
    )


def test_a_diverged_state_is_never_written_to_gs(bucket, local_run, exp):
    gs = f"{bucket}/run"
    _upload(local_run, gs)
    before = fs.files_under(gs)
    with checkpoint.Checkpoints(gs) as ckpts:
        state = ckpts.restore(exp.state_like())
        bad = jax.tree.map(lambda x: x * np.nan if x.dtype.kind == "f" else x, state)
        with pytest.raises(
            FloatingPointError, match=f"The last good checkpoint is {gs}/checkpoints/24"
        ):
            ckpts.save(30, bad, snapshot=True)
    _gcs().invalidate_cache()
    assert fs.files_under(gs) == before


@pytest.mark.slow
def test_an_eval_job_watching_a_training_run_on_gs_sees_every_new_checkpoint(bucket):
    """Training (this process) and eval (a launcher process) on one bucket: the eval lists the
    steps written after it started (no stale listing) while the training deletes its rolling
    preemption checkpoints, and the metrics log keeps the rows of both."""
    gs = f"{bucket}/run"
    _train(gs, **{"training.n_iters": 10})
    flags = {**OVERRIDES, "training.n_iters": 30}
    evaluation = subprocess.Popen(
        [sys.executable, "launch.py", "--mode=eval", "--config", "configs/toy/gmm.py"]
        + [f"--workdir={gs}"]
        + [f"--config.{k}={v}" for k, v in flags.items()]
        + ["--config.eval.wait_for_checkpoints=True", "--config.eval.begin_ckpt=1"]
        + ["--config.eval.end_ckpt=3", "--config.eval.wait_timeout=120"]
        + ["--config.eval.poll_seconds=0.5"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not fs.path(f"{gs}/eval/10/results.json").exists():
            assert evaluation.poll() is None, evaluation.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.5)
            _gcs().invalidate_cache()
        _train(gs, **{"training.n_iters": 30})  # snapshots 20, 30; preemption slots rolled
        out, err = evaluation.communicate(timeout=240)
    finally:
        evaluation.kill()
    assert evaluation.returncode == 0, err[-3000:]
    for noise in NOISE:
        assert noise not in err
    for step in (10, 20, 30):
        assert json.loads(fs.path(f"{gs}/eval/{step}/results.json").read_text())
    rows = metrics_log.read(gs)
    train_steps = sorted(r["step"] for r in rows if "training_loss" in r)
    assert train_steps[-1] == 30
    assert sorted(r["step"] for r in rows if any(k.startswith("eval/") for k in r)) == [10, 20, 30]


def test_another_runs_checkpoint_on_gs_is_refused_and_nothing_changes(bucket, local_run, tmp_path):
    """`gsutil cp -r` of another run's step over the newest: the resume is refused in one line
    naming both runs, and not one object of the bucket is written, moved or removed."""
    other = str(tmp_path / "other")
    config = tiny_config("checkpoint")
    config.seed += 1
    modes.run("train", config, other, stream=io.StringIO())
    gs = f"{bucket}/run"
    _upload(local_run, gs)
    _gcs().rm(f"{gs}/checkpoints/24", recursive=True)
    _gcs().put(f"{other}/checkpoints/24/", f"{gs}/checkpoints/24/", recursive=True)
    _gcs().invalidate_cache()
    before = {f: _gcs().info(f)["md5Hash"] for f in fs.files_under(gs)}
    with pytest.raises(ValueError, match="refusing to resume from checkpoint") as e:
        _train(gs, **{"training.n_iters": 28})
    assert f"{gs}/checkpoints/24" in str(e.value) and "its config differs in seed" in str(e.value)
    _gcs().invalidate_cache()
    assert {f: _gcs().info(f)["md5Hash"] for f in fs.files_under(gs)} == before
