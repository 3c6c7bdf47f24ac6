"""Checkpoint faults as an operator causes them, on the checkpoints of a real (tiny) training run:
flipped bytes, a truncated or deleted data file, a stray empty step directory, every checkpoint
damaged, an old checkpoint without checksums, a checkpoint of another config, a diverged state.

Restores fall back to the newest intact checkpoint with one line per skipped one, return it bit
for bit, never delete or move a file, and keep orbax's tracebacks off stderr; a diverged state is
never written; a resumed run rewrites a damaged step after moving it aside.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

from score_sde import parallel
from score_sde.config import from_config
from score_sde.run import experiment, modes
from score_sde.store import checkpoint
from tests.helpers import (
    NOISE,
    PROGRESS_LINE,
    REPO,
    assert_one_clear_line,
    assert_trees_equal,
    data_files,
    dir_listing,
    restore_host,
    tiny_config,
    tiny_flags,
    truncate_file,
)

# The tiny run (tests/helpers.py OVERRIDES): 24 steps, 2 per dispatch: snapshots
# checkpoints/{10,20,24}, the rolling preemption slot keeps checkpoints-meta/16. Newest first:
# 24, 20, 16 (preemption), 10.
STEPS = {
    "checkpoints/10": 10,
    "checkpoints/20": 20,
    "checkpoints/24": 24,
    "checkpoints-meta/16": 16,
}


@pytest.fixture(scope="module")
def exp():
    return experiment.build(from_config(tiny_config("checkpoint")), parallel.make_mesh())


@pytest.fixture(scope="module")
def reference(tiny_run, exp):
    """{step: host state} of every checkpoint of the intact run."""
    out = {}
    with checkpoint.Checkpoints(str(tiny_run), read_only=True) as ckpts:
        for step in sorted(set(STEPS.values())):
            out[step] = parallel.to_host(ckpts.restore(exp.state_like(), step))
    return out


def _copy(tiny_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir)
    return workdir


def flip_bytes(step_dir, n=64, spots=8):
    """`n` bytes inverted at each of `spots` offsets spread over the largest data file. One spot
    alone may land in the zarr metadata that orbax keeps in the same file but does not read back
    on restore (a harmless flip: the state still restores bit for bit); spread spots always hit
    array data, whatever order orbax wrote the file in."""
    path = data_files(step_dir)[0]
    size = os.path.getsize(path)
    assert size > 4 * n * spots
    with open(path, "r+b") as fh:
        for i in range(spots):
            at = (2 * i + 1) * size // (2 * spots) - n // 2
            fh.seek(at)
            chunk = fh.read(n)
            fh.seek(at)
            fh.write(bytes(b ^ 0xFF for b in chunk))


def wrong_checksum(step_dir):
    """One stored CRC changed: the arrays read back intact, only the verification can tell."""
    path = step_dir / checkpoint.CHECKSUM_ITEM / "metadata"  # orbax JsonSave's file
    sums = json.loads(path.read_text())
    leaf = next(v for v in sums["leaves"].values() if v["crc32"] is not None)
    leaf["crc32"] ^= 1
    path.write_text(json.dumps(sums))


def delete_file(step_dir):
    os.remove(data_files(step_dir)[0])


def garble_metadata(step_dir):
    (step_dir / checkpoint.STATE_ITEM / "_METADATA").write_bytes(b"\x00 not json")


def delete_checksums(step_dir):
    shutil.rmtree(step_dir / checkpoint.CHECKSUM_ITEM)


# ---------------------------------------------------------------------------- damaged data


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage, reason",
    [
        # flipped bytes: caught by the checksums, or first by the decompression when they land
        # in a compressed chunk (orbax's layout decides which)
        (flip_bytes, ("checksum mismatch in ", "unreadable array data")),
        (wrong_checksum, "checksum mismatch in "),
        (truncate_file, "unreadable array data"),
        (delete_file, "unreadable array data"),
        (garble_metadata, "unreadable metadata"),
        (delete_checksums, "missing or unreadable checksums"),
    ],
)
def test_damaged_newest_falls_back_to_the_previous_one(
    damage, reason, tiny_run, exp, reference, tmp_path
):
    workdir = _copy(tiny_run, tmp_path)
    damage(workdir / "checkpoints" / "24")
    before = dir_listing(workdir)
    state, step, lines = restore_host(workdir, exp.state_like())
    assert step == 20 and int(state.step) == 20
    assert_trees_equal(state, reference[20])  # bit for bit
    assert len(lines) == 1, lines
    if isinstance(reason, tuple):
        (reason,) = [r for r in reason if r in lines[0]] or [reason[0]]
    assert_one_clear_line(lines[0], f"{workdir}/checkpoints/24", reason, "nothing was deleted")
    # an explicit step does not fall back
    with pytest.raises(checkpoint.DamagedCheckpointError) as info:
        restore_host(workdir, exp.state_like(), 24)
    assert_one_clear_line(
        str(info.value), f"{workdir}/checkpoints/24 cannot be restored", "damaged", reason
    )
    assert [p for p, _ in info.value.damaged] == [f"{workdir}/checkpoints/24"]
    assert dir_listing(workdir) == before  # nothing deleted, moved or added


def test_checksums_are_stored_in_the_checkpoint_and_match(tiny_run, reference):
    ckpt = ocp.Checkpointer(ocp.JsonCheckpointHandler())
    doc = ckpt.restore(tiny_run / "checkpoints" / "24" / checkpoint.CHECKSUM_ITEM)
    ckpt.close()
    assert doc["format"] == checkpoint.CHECKSUM_FORMAT
    assert doc["leaves"] == checkpoint.checksums(reference[24])
    assert "params.out.kernel.value" in doc["leaves"]


def test_a_checkpoint_whose_name_lies_is_skipped(tiny_run, exp, reference, tmp_path):
    """`mv checkpoints/20 checkpoints/30`: step 30 holds the state of step 20. It is reported and
    passed over for the newest honest one (24), bit for bit; asked for by name it is refused;
    nothing is moved or deleted."""
    workdir = _copy(tiny_run, tmp_path)
    os.rename(workdir / "checkpoints" / "20", workdir / "checkpoints" / "30")
    before = dir_listing(workdir)
    state, step, lines = restore_host(workdir, exp.state_like())
    assert step == 24 and int(state.step) == 24
    assert_trees_equal(state, reference[24])
    assert len(lines) == 1, lines
    assert_one_clear_line(
        lines[0],
        f"skipped checkpoint {workdir}/checkpoints/30: its name says step 30 but it holds the "
        "state of step 20 (renamed or copied by hand?) (nothing was deleted)",
    )
    with pytest.raises(checkpoint.DamagedCheckpointError, match="holds the state of step 20"):
        restore_host(workdir, exp.state_like(), 30)
    assert dir_listing(workdir) == before


def test_stray_empty_directories_are_skipped_and_saving_still_works(
    tiny_run, exp, reference, tmp_path
):
    workdir = _copy(tiny_run, tmp_path)
    (workdir / "checkpoints" / "900").mkdir()
    (workdir / "checkpoints-meta" / "900").mkdir()
    (workdir / "checkpoints" / "950").mkdir()
    (workdir / "checkpoints" / "950" / "notes.txt").write_text("not a checkpoint")
    before = dir_listing(workdir)
    state, step, lines = restore_host(workdir, exp.state_like())
    assert step == 24
    assert_trees_equal(state, reference[24])
    assert len(lines) == 3, lines
    for kind in ("checkpoints", "checkpoints-meta"):
        assert any(f"{workdir}/{kind}/900: empty directory" in line for line in lines), lines
    assert any(f"{workdir}/checkpoints/950: no state/ item" in line for line in lines), lines
    assert dir_listing(workdir) == before
    shutil.rmtree(workdir / "checkpoints" / "950")

    lines = []
    with checkpoint.Checkpoints(str(workdir), warn=lines.append) as ckpts:
        assert ckpts.latest_step() == 24 and ckpts.snapshot_steps() == [10, 20, 24]
        state = ckpts.restore(exp.state_like())
        # the rolling slot: a stray newer step would make orbax drop the new save
        ckpts.save(26, state._replace(step=state.step + 2), snapshot=False)
        ckpts.save(900, state._replace(step=state.step + 876), snapshot=True)  # the stray step
    assert sorted(os.listdir(workdir / "checkpoints-meta")) == ["26"]
    with checkpoint.Checkpoints(str(workdir), read_only=True) as ckpts:
        assert ckpts.latest_step() == 900
        assert ckpts.snapshot_steps() == [10, 20, 24, 900]
        restored = parallel.to_host(ckpts.restore(exp.state_like(), 900))
        assert int(restored.step) == 900
        assert_trees_equal(restored._replace(step=reference[24].step), reference[24])
        assert int(parallel.to_host(ckpts.restore(exp.state_like(), 26).step)) == 26


@pytest.mark.slow
def test_every_checkpoint_damaged_is_one_error_naming_each(tiny_run, exp, tmp_path):
    workdir = _copy(tiny_run, tmp_path)
    for rel in STEPS:
        truncate_file(workdir / rel)
    before = dir_listing(workdir)
    lines = []
    with checkpoint.Checkpoints(str(workdir), read_only=True, warn=lines.append) as ckpts:
        with pytest.raises(checkpoint.DamagedCheckpointError) as info:
            ckpts.restore(exp.state_like())
    assert_one_clear_line(
        str(info.value), "every one is damaged", "Nothing was deleted", "fresh --workdir"
    )
    assert len(info.value.damaged) == len(STEPS)
    for rel in STEPS:
        assert f"{workdir}/{rel} (unreadable array data" in str(info.value)
    assert lines == []  # the error says it all: no line per checkpoint on top
    assert dir_listing(workdir) == before


def test_damaged_newest_is_rewritten_by_the_resumed_run(tiny_run, exp, reference, tmp_path):
    """Resumed from 20, the run reaches 24 again: the damaged 24 is moved aside (kept), the new
    one written, and equals the original."""
    workdir = _copy(tiny_run, tmp_path)
    flip_bytes(workdir / "checkpoints" / "24")
    damaged = dir_listing(workdir / "checkpoints" / "24")
    out = io.StringIO()
    modes.run("train", tiny_config("checkpoint"), str(workdir), stream=out)
    assert "resumed from step 20" in out.getvalue()
    moved = workdir / checkpoint.DAMAGED_DIR / "checkpoints" / "24"
    assert dir_listing(moved) == damaged
    state, step, lines = restore_host(workdir, exp.state_like())
    assert step == 24 and lines == []
    assert_trees_equal(state, reference[24])


# ---------------------------------------------------------------------------- format and config


@pytest.mark.slow
def test_old_checkpoint_without_checksums_restores_unverified(exp, reference, tmp_path):
    workdir = tmp_path / "old"
    state = jax.device_put(reference[20], parallel.replicated(exp.mesh))
    manager = ocp.CheckpointManager(str(workdir / "checkpoints"))  # the format before checksums
    manager.save(20, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    manager.close()
    assert os.listdir(workdir / "checkpoints" / "20").count("default") == 1
    lines = []
    with checkpoint.Checkpoints(str(workdir), warn=lines.append) as ckpts:
        assert_trees_equal(parallel.to_host(ckpts.restore(exp.state_like())), reference[20])
        assert_trees_equal(parallel.to_host(ckpts.restore(exp.state_like(), 20)), reference[20])
        assert len(lines) == 1, lines  # reported once
        assert_one_clear_line(lines[0], f"{workdir}/checkpoints/20", "no checksums", "unverified")
        ckpts.save(24, jax.device_put(reference[24], parallel.replicated(exp.mesh)), snapshot=True)
    state, step, lines = restore_host(workdir, exp.state_like())
    assert step == 24 and lines == []
    assert_trees_equal(state, reference[24])
    # another config is told apart from orbax's metadata alone
    other = experiment.build(
        from_config(tiny_config("checkpoint", **{"model.nf": 32})), parallel.make_mesh()
    )
    with pytest.raises(ValueError, match="checkpoints/24 cannot be restored into this config"):
        restore_host(workdir, other.state_like())
    shutil.rmtree(workdir / "checkpoints" / "24")
    with pytest.raises(ValueError, match="checkpoints/20 cannot be restored into this config"):
        restore_host(workdir, other.state_like())


@pytest.mark.parametrize("damaged_newest", [False, True])
def test_another_config_is_an_error_not_a_fallback(damaged_newest, tiny_run, tmp_path):
    workdir = _copy(tiny_run, tmp_path)
    if damaged_newest:  # the shapes are read from the metadata, before any array
        flip_bytes(workdir / "checkpoints" / "24")
    before = dir_listing(workdir)
    other = experiment.build(
        from_config(tiny_config("checkpoint", **{"model.nf": 32})), parallel.make_mesh()
    )
    lines = []
    with checkpoint.Checkpoints(str(workdir), read_only=True, warn=lines.append) as ckpts:
        with pytest.raises(ValueError) as info:
            ckpts.restore(other.state_like())
    assert not isinstance(info.value, checkpoint.DamagedCheckpointError)
    assert_one_clear_line(
        str(info.value),
        f"{workdir}/checkpoints/24 cannot be restored into this config's train state",
        "config.json",
        "fresh --workdir",
        "has shape (16,) in the checkpoint but (32,) here",
    )
    assert lines == []
    assert dir_listing(workdir) == before


# ---------------------------------------------------------------------------- diverged state


@pytest.mark.parametrize(
    "spoil, leaf",
    [
        (lambda s: s._replace(params=jax.tree.map(lambda x: x * jnp.nan, s.params)), "params."),
        (lambda s: s._replace(opt_state=jax.tree.map(lambda x: x / 0, s.opt_state)), "opt_state."),
        (
            lambda s: s._replace(ema_params=jax.tree.map(lambda x: x + 1e31, s.ema_params)),
            "ema_params.",
        ),
    ],
)
def test_diverged_state_is_not_written(spoil, leaf, tiny_run, exp, tmp_path):
    workdir = _copy(tiny_run, tmp_path)
    before = dir_listing(workdir)
    with checkpoint.Checkpoints(str(workdir)) as ckpts:
        state = ckpts.restore(exp.state_like())
        with pytest.raises(FloatingPointError) as info:
            ckpts.save(26, spoil(state), snapshot=True)
    assert_one_clear_line(
        str(info.value),
        "refusing to save step 26",
        leaf,
        "nothing was written",
        f"last good checkpoint is {workdir}/checkpoints/24",
        "config.optim.lr",
        "config.optim.grad_clip",
    )
    assert dir_listing(workdir) == before  # no step directory, no temporary one

    with checkpoint.Checkpoints(str(workdir)) as ckpts:  # nothing restored or saved yet
        with pytest.raises(
            FloatingPointError, match=r"checkpoints/24 \(the newest on disk\); lower"
        ):
            ckpts.save(26, spoil(state), snapshot=False)
        ckpts.save(26, state._replace(step=state.step + 2), snapshot=False)  # a good one
        with pytest.raises(
            FloatingPointError, match=r"checkpoint is \S+/checkpoints-meta/26; lower"
        ):
            ckpts.save(28, spoil(state), snapshot=False)
    assert sorted(os.listdir(workdir / "checkpoints-meta")) == ["26"]


def test_no_checkpoint_is_still_none(exp, tmp_path):
    with checkpoint.Checkpoints(str(tmp_path)) as ckpts:
        assert ckpts.restore(exp.state_like()) is None
        assert ckpts.restore_newest(exp.state_like()) == (None, None)


# ---------------------------------------------------------------------------- what the user sees


@pytest.mark.slow
def test_damaged_restores_keep_orbax_noise_off_stderr(tiny_run, tmp_path):
    """In a fresh process (orbax's threads outlive the restore): fallback over a truncated and a
    deleted file, an explicit damaged step, and every checkpoint damaged."""
    workdir = _copy(tiny_run, tmp_path)
    truncate_file(workdir / "checkpoints" / "24")
    delete_file(workdir / "checkpoints" / "20")
    code = textwrap.dedent(f"""
        import os
        from score_sde.store import checkpoint
        from score_sde.run import experiment
        from score_sde import parallel
        from score_sde.config import from_config
        from tests.helpers import tiny_config, truncate_file

        exp = experiment.build(from_config(tiny_config("checkpoint")), parallel.make_mesh())
        workdir = {str(workdir)!r}
        with checkpoint.Checkpoints(workdir, read_only=True) as ckpts:
            state, step = ckpts.restore_newest(exp.state_like())
            print("restored", step, int(parallel.to_host(state.step)))
            try:
                ckpts.restore(exp.state_like(), 24)
            except ValueError as e:
                print("explicit:", e)
        for rel in ("checkpoints/10", "checkpoints-meta/16"):
            truncate_file(os.path.join(workdir, rel))
        with checkpoint.Checkpoints(workdir, read_only=True) as ckpts:
            try:
                ckpts.restore(exp.state_like())
            except ValueError as e:
                print("all:", e)
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "restored 16 16" in proc.stdout
    assert "explicit: checkpoint" in proc.stdout and "all: no checkpoint" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, proc.stderr[-3000:]
    assert f"{workdir}/checkpoints/24: unreadable array data" in lines[0]
    assert f"{workdir}/checkpoints/20: unreadable array data" in lines[1]
    for noise in NOISE:
        assert noise not in proc.stderr + proc.stdout, proc.stderr[-3000:]


def _launch(workdir, *args):
    cmd = [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={workdir}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run(
        cmd + tiny_flags() + list(args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


@pytest.mark.slow
def test_launcher_resumes_from_the_older_checkpoint_after_corruption(exp, tmp_path):
    workdir = tmp_path / "run"
    first = _launch(workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    final, _, _ = restore_host(workdir, exp.state_like(), 24)

    truncate_file(workdir / "checkpoints" / "24")
    evaluated = _launch(workdir, "--mode=eval")  # the newest intact one, saying so
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    lines = [
        ln for ln in evaluated.stderr.splitlines() if ln.strip() and not PROGRESS_LINE.match(ln)
    ]
    assert len(lines) == 1, evaluated.stderr[-3000:]  # and the plain progress lines
    assert_one_clear_line(
        lines[0], f"skipped checkpoint {workdir}/checkpoints/24", "unreadable array data"
    )
    assert sorted(os.listdir(workdir / "eval")) == ["20"]

    again = _launch(workdir)  # the same command
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from step 20 in {workdir}" in again.stdout
    lines = [line for line in again.stderr.splitlines() if line.strip()]
    assert len(lines) == 2, again.stderr[-3000:]
    assert_one_clear_line(
        lines[0], f"skipped checkpoint {workdir}/checkpoints/24", "unreadable array data"
    )
    assert_one_clear_line(
        lines[1], f"moved the damaged checkpoint {workdir}/checkpoints/24", "checkpoints-damaged"
    )
    for noise in NOISE:
        assert noise not in again.stderr + evaluated.stderr
    # the damaged step was kept aside; the rewritten one is the uninterrupted run's state
    assert os.listdir(workdir / checkpoint.DAMAGED_DIR / "checkpoints") == ["24"]
    state, step, lines = restore_host(workdir, exp.state_like())
    assert step == 24 and lines == []
    assert_trees_equal(state, final)
