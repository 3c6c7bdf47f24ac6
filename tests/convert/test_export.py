"""`score-sde export --workdir W --out F.safetensors` and `score_sde.load(F)`, through the real
entry points on a tiny toy run: every parameter bit for bit the checkpoint's EMA parameter (same
dtype, shape and tree), the config in the metadata the run's config.json, the same samples as the
work directory's model, and one `error:` line (exit status 2) or one ValueError for bad input."""

import io
import json
import os
import re
import shlex
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

import score_sde
from configs.toy import base
from score_sde import cli
from score_sde.convert import safetensors_export
from score_sde.run import experiment, modes

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def _tiny_config():
    """configs/toy/gmm.py shrunk to seconds: checkpoints at steps 2 and 4."""
    c = base.get_config("toy/gmm")
    c.model.nf, c.model.num_layers, c.model.num_scales = 16, 1, 20
    t = c.training
    t.batch_size, t.n_iters, t.n_jitted_steps, t.snapshot_freq = 16, 4, 2, 2
    t.snapshot_sampling = t.eval_after_training = False
    c.sampling.batch_size = c.sampling.num_samples = 16
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("export") / "run")
    modes.run("train", _tiny_config(), workdir, stream=io.StringIO())
    return workdir


def _cli(*args: str) -> None:
    cli.main(["score-sde", *args])


def _error(capsys, *args: str) -> str:
    """The one `error:` line of a command that exits 2."""
    with pytest.raises(SystemExit) as e:
        _cli(*args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def _assert_bit_identical(got, want) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True
    ):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert np.array_equal(a, b) and a.tobytes() == b.tobytes(), path  # the bits too


def test_export_holds_the_ema_params_and_config_bit_for_bit(run, tmp_path, capsys):
    out = str(tmp_path / "model.safetensors")
    _cli("export", "--workdir", run, "--out", out)
    assert capsys.readouterr().out.strip() == (
        f"exported {run} (step 4: EMA parameters and config) -> {out}; load it with "
        f"score_sde.load({out!r})"
    )
    exp, params, step = experiment.restore(run)
    with safe_open(out, framework="np") as f:
        meta = f.metadata()
        names = set(f.keys())
    assert meta["format"] == safetensors_export.FORMAT and meta["step"] == "4"
    with open(os.path.join(run, "config.json")) as f:
        assert json.loads(meta["config"]) == json.load(f)
    assert "hidden/0/kernel" in names and "out/bias" in names
    assert len(names) == len(jax.tree.leaves(params))

    model = score_sde.load(out)
    assert model.step == step == 4
    assert model.cfg == exp.cfg
    _assert_bit_identical(model.params, params)
    assert all(
        a.sharding == b.sharding
        for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(params), strict=True)
    )
    key = jax.random.key(7)
    np.testing.assert_array_equal(model.sample(key, 16), score_sde.load(run).sample(key, 16))


def test_mode_flag_form_step_and_overwrite(run, tmp_path, capsys):
    out = str(tmp_path / "step2.safetensors")
    _cli("--mode=export", f"--workdir={run}", f"--out={out}", "--step=2")
    _, params2, _ = experiment.restore(run, 2)
    model = score_sde.load(out)
    assert model.step == 2
    _assert_bit_identical(model.params, params2)
    err = _error(capsys, "export", "--workdir", run, "--out", out)
    assert f"error: --out {out} exists; pass --overwrite to replace it" in err
    _cli("--mode", "export", "--workdir", run, "--out", out, "--overwrite")
    _assert_bit_identical(score_sde.load(out).params, experiment.restore(run)[1])
    with pytest.raises(ValueError, match=r"holds step 4 only, not step 2; .* --step=2"):
        score_sde.load(out, step=2)


def test_overrides_apply_to_the_files_config(run, tmp_path):
    out = str(tmp_path / "m.safetensors")
    _cli("export", "--workdir", run, "--out", out)
    model = score_sde.load(out, overrides={"sampling.method": "ode"})
    assert model.cfg.sampling.method == "ode"


def test_bad_command_lines_are_one_line_and_write_nothing(run, tmp_path, capsys):
    out = str(tmp_path / "m.safetensors")
    missing = str(tmp_path / "nope")
    cases = [
        (["--workdir", missing, "--out", out], [f"--workdir {missing}: no such directory"]),
        (["--workdir", str(tmp_path), "--out", out], ["no config.json there", "--mode=train"]),
        (["--workdir", run, "--out", str(tmp_path / "m.npz")], ["must end in .safetensors"]),
        (["--workdir", run], ["the following arguments are required: --out", "usage: score-sde"]),
        (["--workdir", run, "--out", out, "--bogus"], ["unrecognized arguments: --bogus"]),
        (["--workdir", run, "--out", out, "--step=3"], ["no checkpoint at step 3", "[2, 4]"]),
        (["--workdir", run, "--out", str(tmp_path)], ["is a directory"]),
    ]
    for args, needles in cases:
        err = _error(capsys, "export", *args)
        for needle in needles:
            assert needle in err, (needle, err)
    empty = tmp_path / "untrained"
    empty.mkdir()
    shutil.copy(os.path.join(run, "config.json"), empty)
    err = _error(capsys, "export", "--workdir", str(empty), "--out", out)
    assert f"error: no checkpoint in {empty}; train first with --mode=train" in err
    assert not os.path.exists(out) and sorted(os.listdir(tmp_path)) == ["untrained"]


def test_help(capsys):
    for args in (["export", "--help"], ["--mode=export", "-h"]):
        with pytest.raises(SystemExit) as e:
            _cli(*args)
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: score-sde export --workdir=DIR --out=FILE.safetensors")
        assert "--overwrite" in out and "--step=N" in out
    with pytest.raises(SystemExit) as e:
        _cli("--help")
    assert e.value.code == 0
    assert re.search(r"^  export +write a run's EMA parameters", capsys.readouterr().out, re.M)


def test_load_errors_name_the_file_and_the_fix(run, tmp_path):
    npz = tmp_path / "model.npz"
    npz.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"model.npz is a file, not a work directory: .* or a "):
        score_sde.load(str(npz))
    with pytest.raises(ValueError, match=r"absent.safetensors: no such file; write it with "):
        score_sde.load(str(tmp_path / "absent.safetensors"))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"junk.safetensors is not a readable .safetensors file"):
        score_sde.load(str(junk))
    foreign = str(tmp_path / "foreign.safetensors")
    safetensors.numpy.save_file({"w": np.zeros(2, np.float32)}, foreign)
    with pytest.raises(ValueError, match=r"foreign.safetensors is a .safetensors file but not a "):
        score_sde.load(foreign)


def test_a_file_that_does_not_fit_the_network_names_the_keys(run, tmp_path):
    good = str(tmp_path / "good.safetensors")
    _cli("export", "--workdir", run, "--out", good)
    with safe_open(good, framework="np") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["hidden/0/kernel_extra"] = tensors.pop("hidden/0/kernel")
    tensors["out/bias"] = tensors["out/bias"].astype(np.float16)
    bad = str(tmp_path / "bad.safetensors")
    safetensors.numpy.save_file(tensors, bad, metadata=meta)
    with pytest.raises(ValueError) as e:
        score_sde.load(bad)
    assert str(e.value) == (
        f"{bad} does not hold the parameters of its config's network: missing hidden/0/kernel; "
        "unexpected hidden/0/kernel_extra; mismatching out/bias (file float16 [2], network "
        f"float32 [2]); export the run again with {safetensors_export.MADE_BY}"
    )


def test_names_and_bf16_round_trip_through_safetensors(tmp_path):
    """Sequence indices, dict keys and bfloat16 leaves come back as they were."""
    tree = {
        "blocks": [{"w": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3)}, {"w": jnp.ones(2)}],
        "scale": np.float32(3.5),
    }
    tensors = {n: np.asarray(x) for n, x in safetensors_export.flatten(tree).items()}
    assert sorted(tensors) == ["blocks/0/w", "blocks/1/w", "scale"]
    path = str(tmp_path / "t.safetensors")
    safetensors.numpy.save_file(tensors, path)
    back = safetensors_export.unflatten(tree, safetensors.numpy.load_file(path), path)
    assert back["blocks"][0]["w"].dtype == ml_dtypes.bfloat16
    _assert_bit_identical(back, tree)


def test_the_readme_command_runs(run, tmp_path, monkeypatch, capsys):
    """README's `score-sde export ...` as written, on the tiny run at its --workdir."""
    with open(README) as f:
        (command,) = re.findall(r"`(score-sde export [^`]*)`", f.read())
    argv = shlex.split(command)
    flags = dict(a.split("=", 1) for a in argv[2:])  # --workdir=DIR --out=FILE
    monkeypatch.chdir(tmp_path)
    shutil.copytree(run, flags["--workdir"])
    out = flags["--out"]
    cli.main(argv)
    assert f"-> {out}" in capsys.readouterr().out
    _assert_bit_identical(score_sde.load(out).params, experiment.restore(run)[1])
