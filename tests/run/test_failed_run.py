"""A run that fails before it wrote any checkpoint takes back what it added to the work directory,
and never touches what was there before (score_sde.run.opening)."""

import os

import pytest

from score_sde import config as config_lib
from score_sde.run import modes

DIVERGES = {  # the toy's MLP at an absurd learning rate: NaN loss within a few steps
    "optim.lr": "1e12",
    "optim.grad_clip": "-1.0",
    "training.n_iters": "20",
    "training.log_freq": "1",
    "training.snapshot_freq": "20",
    "training.snapshot_freq_for_preemption": "20",
    "training.snapshot_sampling": "False",
}


def _diverge(workdir):
    cfg = config_lib.load("toy/gmm", DIVERGES)
    with pytest.raises(FloatingPointError, match="No checkpoint was written yet"):
        modes.run("train", cfg, str(workdir))


def test_a_new_workdir_and_its_new_parents_are_removed(tmp_path):
    _diverge(tmp_path / "a" / "b" / "run")
    assert os.listdir(tmp_path) == []


def test_an_existing_workdir_keeps_what_it_held(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine")
    (workdir / "data").mkdir()
    _diverge(workdir)
    assert sorted(os.listdir(workdir)) == ["data", "notes.txt"]
    assert (workdir / "notes.txt").read_text() == "mine"


def test_a_directory_someone_else_filled_meanwhile_stays(tmp_path):
    """Only an empty directory is removed: a file put there during the run keeps it."""
    from score_sde.store import workdir as wd

    added = wd.Additions(str(tmp_path / "x" / "run"))
    (tmp_path / "x" / "run").mkdir(parents=True)
    (tmp_path / "x" / "other").write_text("another run's")
    added.remove_directories()
    assert sorted(os.listdir(tmp_path / "x")) == ["other"]
