"""The converter's command line as a user hits it: `python -m score_sde.convert --config FILE
--source PATH --workdir DIR [--format ...] [--overwrite]`.

Bad input (a directory, random bytes or a missing file as --source; a step the work directory
already has; usage errors) gives one `error:` line naming the path or flag and what is expected,
exit status 2, and leaves the work directory as it was. --overwrite really replaces the weights;
success prints the exact sample command, which works.
"""

import glob
import os
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx, serialization

from score_sde import config as config_lib
from score_sde import convert, models
from score_sde.convert import layout
from score_sde.run import experiment
from score_sde.store import checkpoint
from tests.helpers import REPO, assert_kept, assert_one_clear_line, snapshot

CONFIG = ["--config", "configs/digits/ddpmpp.py"]
OVERRIDES = [
    "--config.model.nf=8",
    "--config.model.num_scales=4",
    "--config.sampling.num_samples=8",
    "--config.sampling.batch_size=8",
]


def _cfg():
    path = os.path.join(REPO, "configs", "digits", "ddpmpp.py")
    _, overrides, _ = config_lib.split_argv(OVERRIDES, "")
    return config_lib.load(path, overrides)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """{name: (path, EMA params in our layout)}: original-layout checkpoints of the tiny config
    with random weights, 'a' and 'b' at step 1234 (different weights), 'old' at step 7, each
    in its own folder as the original's exp/<run>/checkpoints/checkpoint_<step>."""
    cfg, root = _cfg(), tmp_path_factory.mktemp("sources")
    like = nnx.to_pure_dict(models.abstract_params(cfg.model, cfg.data))
    rng = np.random.default_rng(0)
    out = {}
    for name, step in (("a", 1234), ("b", 1234), ("old", 7)):
        p = jax.tree.map(lambda s: 0.05 * rng.standard_normal(s.shape).astype(s.dtype), like)
        e = jax.tree.map(lambda x: x * 0.5, p)
        state = {
            "step": step,
            "optimizer": {"target": layout.to_jax_layout(p, cfg), "state": {}},
            "params_ema": layout.to_jax_layout(e, cfg),
            "ema_rate": 0.999,
        }
        path = root / name / f"checkpoint_{step}"
        path.parent.mkdir()
        path.write_bytes(serialization.msgpack_serialize(state))
        out[name] = (str(path), e)
    return out


def _convert(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        [sys.executable, "-m", "score_sde.convert", *args],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip


def _assert_fails(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert_one_clear_line(lines[0], *needles)
    assert proc.stdout == ""


def _workdir(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    return workdir


def _restored_ema(workdir):
    exp = experiment.build(_cfg())
    with checkpoint.Checkpoints(str(workdir), read_only=True) as ckpts:
        state = ckpts.restore(exp.state_like())
    return int(state.step), jax.tree.map(np.asarray, nnx.to_pure_dict(state.ema_params))


def _same(a, b) -> bool:
    fa, fb = layout.flatten(a), layout.flatten(b)
    return fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["directory", "random bytes", "text file", "missing file"])
def test_bad_source(kind, tmp_path, sources):
    if kind == "directory":
        source = os.path.dirname(sources["a"][0])  # the folder holding checkpoint_1234
        needles = ["is a directory", "e.g. --source " + sources["a"][0]]
    elif kind == "missing file":
        source = str(tmp_path / "checkpoint_24")
        needles = ["no such file"]
    else:
        source = str(tmp_path / "checkpoint_24")
        data = os.urandom(4096) if kind == "random bytes" else b"step = 24\n" * 50
        (tmp_path / "checkpoint_24").write_bytes(data)
        needles = ["is not a flax msgpack checkpoint"]
    workdir = _workdir(tmp_path)
    before = snapshot(workdir)
    proc = _convert(*CONFIG, *OVERRIDES, f"--source={source}", f"--workdir={workdir}")
    _assert_fails(proc, f"--source {source}", *needles, "flax msgpack checkpoint_<n>", ".pth")
    assert_kept(before, workdir)
    assert sorted(os.listdir(workdir)) == ["notes.txt"]


@pytest.mark.slow
def test_second_conversion_to_a_step_needs_overwrite(tmp_path, sources):
    (a, ema_a), (b, ema_b) = sources["a"], sources["b"]
    workdir = str(tmp_path / "run")
    proc = _convert(*CONFIG, *OVERRIDES, f"--source={a}", f"--workdir={workdir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    command = shlex.join(
        ["python", "launch.py", *CONFIG, *OVERRIDES, "--workdir", workdir, "--mode", "sample"]
    )
    assert proc.stdout.strip().endswith(f"sample it with: {command}"), proc.stdout
    assert f"{workdir}/checkpoints/1234" in proc.stdout
    assert _same(_restored_ema(workdir)[1], ema_a)
    # the same step again: refused, the old weights kept, nothing written
    before = snapshot(workdir)
    proc = _convert(*CONFIG, *OVERRIDES, f"--source={b}", f"--workdir={workdir}")
    _assert_fails(proc, f"--workdir {workdir} already has a checkpoint at step 1234", "--overwrite")
    assert_kept(before, workdir)
    assert snapshot(workdir) == before
    # with --overwrite: replaced by b's weights, no leftovers
    proc = _convert(*CONFIG, *OVERRIDES, f"--source={b}", f"--workdir={workdir}", "--overwrite")
    assert proc.returncode == 0, proc.stderr[-2000:]
    step, ema = _restored_ema(workdir)
    assert step == 1234 and _same(ema, ema_b) and not _same(ema, ema_a)
    assert sorted(os.listdir(workdir)) == ["checkpoints", "checkpoints-meta", "config.json"]
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["1234"]
    # an older step: refused, since sample mode would load step 1234, not 7
    before = snapshot(workdir)
    for overwrite in (False, True):
        with pytest.raises(ValueError) as info:
            convert.convert(_cfg(), sources["old"][0], workdir, overwrite=overwrite)
        assert_one_clear_line(str(info.value), "newer checkpoint (step 1234)", "(step 7)")
    assert snapshot(workdir) == before
    # the printed command samples the converted checkpoint
    argv = shlex.split(proc.stdout.rsplit("sample it with: ", 1)[1])
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert glob.glob(os.path.join(workdir, "samples", "ckpt_1234_pc_nfe*_seed*.npz"))


@pytest.mark.slow
def test_an_incomplete_step_directory_is_replaced_only_with_overwrite(tmp_path, sources):
    """A step directory orbax would skip saving over (here: empty, from an interrupted copy)."""
    (a, ema_a) = sources["a"]
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "1234").mkdir(parents=True)
    before = snapshot(workdir)
    with pytest.raises(ValueError, match="already has a checkpoint at step 1234"):
        convert.convert(_cfg(), a, str(workdir))
    assert snapshot(workdir) == before and os.listdir(workdir) == ["checkpoints"]
    assert convert.convert(_cfg(), a, str(workdir), overwrite=True) == 1234
    assert _same(_restored_ema(workdir)[1], ema_a)
    assert ".replaced" not in " ".join(os.listdir(workdir))


def test_a_msgpack_file_of_something_else(tmp_path):
    path = tmp_path / "checkpoint_3"
    path.write_bytes(serialization.msgpack_serialize({"params": {"w": np.zeros(3)}}))
    with pytest.raises(ValueError) as info:
        convert.convert(_cfg(), str(path), str(tmp_path / "run"))
    assert_one_clear_line(
        str(info.value), f"--source {path}: not an original score_sde checkpoint", "['params']"
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        ([*CONFIG, "--workdir=w"], ["--source is required", "usage:"]),
        ([*CONFIG, "--source=s"], ["--workdir is required"]),
        (["--source=s", "--workdir=w"], ["--config is required"]),
        ([], ["--config, --source, --workdir are required"]),
        ([*CONFIG, "--source=s", "--workdir=w", "--overwrit"], ["'overwrit'", "usage:"]),
        ([*CONFIG, "--source=s", "--workdir=w", "--format=tf"], ["--format=tf", "auto|jax|torch"]),
        ([*CONFIG, "--source=s", "--workdir=w", "extra"], ["unexpected arguments ['extra']"]),
        (["--config=configs/nope.py", "--source=s", "--workdir=w"], ["no such config file"]),
    ],
)
def test_usage_errors(args, needles, tmp_path):
    proc = _convert(*args)
    _assert_fails(proc, *needles)
