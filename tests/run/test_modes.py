"""The three modes end to end on a tiny 2-D run (4 faked devices): progress line, JSONL and
TensorBoard metrics, periodic eval loss, EMA sample pictures, eval results, sample mode with
every sampler."""

import glob
import io
import json
import os
import pathlib
import shutil

import jax
import numpy as np
import pytest

from score_sde import parallel
from score_sde.config import from_config
from score_sde.run import experiment, modes
from score_sde.store import checkpoint, image_io
from tests.helpers import tiny_config
from tests.tb_events import read_events


def _is_png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("run"))
    out = io.StringIO()
    modes.run("train", tiny_config("modes"), workdir, stream=out)
    return workdir, out.getvalue()


def test_train_logs_progress_jsonl_tensorboard_and_ema_samples(run):
    workdir, stdout = run
    progress = [line for line in stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 4  # steps 2, 4, 6, 8
    assert progress[1].startswith("[##########..........] 4/8  training_loss ")
    for part in ("steps/s", "pt/s", "ETA"):  # the 2-D toy counts points, not images
        assert part in progress[1], progress[1]
    assert "step 4: eval loss (EMA params)" in stdout and "step 8: eval loss" in stdout

    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records if "training_loss" in r] == [2, 4, 6, 8]
    assert [r["step"] for r in records if "eval_loss" in r] == [4, 8]
    assert all(np.isfinite(r["training_loss"]) for r in records if "training_loss" in r)
    assert "examples_per_sec" in records[-2] or "examples_per_sec" in records[-1]

    # TensorBoard: a readable event file (CRC-checked records) with the same scalars.
    tb = os.path.join(workdir, "tensorboard")
    (name,) = os.listdir(tb)
    assert name.startswith("events.out.tfevents.")
    events = read_events(os.path.join(tb, name))
    losses = {s: v["training_loss"] for s, v in events if "training_loss" in v}
    assert sorted(losses) == [2, 4, 6, 8]
    for r in records:
        if "training_loss" in r:
            assert losses[r["step"]] == pytest.approx(r["training_loss"], rel=1e-6)  # float32
    assert {s for s, v in events if "eval_loss" in v} == {4, 8}

    # The snapshot's sample picture is drawn from the EMA params.
    stem = os.path.join(workdir, "samples", "iter_8", "sample")
    assert _is_png(stem + ".png")
    saved = np.load(stem + ".npz")["samples"]
    cfg = from_config(tiny_config("modes"))
    exp = experiment.build(cfg)
    with checkpoint.Checkpoints(workdir) as ckpts:
        state = ckpts.restore(exp.state_like(), 8)
    key = jax.random.fold_in(exp.key(experiment.KEY_SAMPLES), 8)
    again, _ = exp.sample(state.ema_params, key, len(saved), "pc", 64)
    np.testing.assert_allclose(saved, again, rtol=1e-5, atol=1e-5)
    # ... and the same picture is in TensorBoard at the snapshot step
    (grid,) = [v["samples"] for step, v in events if "samples" in v and step == 8]
    picture = image_io.decode_image(grid.encoded_image_string)
    np.testing.assert_array_equal(picture, image_io.read_image(stem + ".png"))
    params, ema = parallel.to_host((state.params, state.ema_params))
    assert any(
        not np.allclose(a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ema), strict=True)
    )


@pytest.mark.slow
def test_eval_mode_writes_results_and_pictures(run):
    workdir, _ = run
    out = io.StringIO()
    (results,) = modes.run("eval", tiny_config("modes"), workdir, stream=out)
    path = os.path.join(workdir, "eval", "8")
    saved = json.load(open(os.path.join(path, "results.json")))
    assert saved == json.loads(json.dumps(results))
    for k in ("eval_loss", "test_log_likelihood", "gaussian_fit_log_likelihood"):
        assert np.isfinite(saved[k]), k
    assert saved["likelihood_examples"] == 64 and saved["step"] == 8
    assert saved["nfe_pc"] == 2 * 20 and saved["nfe_ode"] > 0
    for name in ("pc.png", "ode.png", "scatter.png"):
        assert _is_png(os.path.join(path, name)), name
    assert np.load(os.path.join(path, "ode.npz"))["samples"].shape == (64, 2)


def test_sample_mode_writes_no_event_file(run, tmp_path):
    workdir = shutil.copytree(run[0], tmp_path / "run")
    shutil.rmtree(workdir / "tensorboard")
    modes.run("sample", tiny_config("modes"), str(workdir), stream=io.StringIO())
    assert list((workdir / "samples").glob("ckpt_8_*.npz"))
    assert not (workdir / "tensorboard").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, predictor, corrector",
    [
        ("pc", "euler_maruyama", "none"),
        ("pc", "reverse_diffusion", "langevin"),
        ("pc", "ancestral_sampling", "none"),
        ("pc", "none", "ald"),
        ("pc", "none", "langevin"),
        ("ode", "none", "none"),
        ("edm_heun", "none", "none"),
        ("dpmpp_2m", "none", "none"),
        ("dpmpp_3m", "none", "none"),
        ("dpmpp_2m_sde", "none", "none"),
        ("ddim", "none", "none"),
    ],
)
def test_sample_mode_any_sampler_across_devices(run, method, predictor, corrector):
    workdir, _ = run
    c = tiny_config("modes")
    c.sampling.method, c.sampling.predictor, c.sampling.corrector = method, predictor, corrector
    c.sampling.num_samples, c.sampling.batch_size = 40, 16  # 3 calls of 4 per device, trimmed
    c.model.num_scales = 50  # DDPM betas reach beta_max / N: N = 20 makes ancestral's 1 - beta 0
    samples = modes.run("sample", c, workdir, stream=io.StringIO())
    assert jax.device_count() == 4
    assert samples.shape == (40, 2) and np.isfinite(samples).all()
    assert len(np.unique(samples[:, 0])) == 40  # every device and call draws its own samples
    found = glob.glob(os.path.join(workdir, "samples", f"ckpt_8_{method}_nfe*_seed*.npz"))
    # the other predictor/corrector pairs of this module wrote theirs beside it, not over it
    (npz,) = [p for p in found if np.array_equal(np.load(p)["samples"], samples)]
    with np.load(npz) as f:
        assert int(f["step"]) == 8 and str(f["method"]) == method and int(f["seed"]) == c.seed
        assert (
            os.path.basename(npz)
            == f"ckpt_8_{method}_nfe{int(f['nfe'])}_seed{c.seed}_{f['config_hash']}.npz"
        )
    assert _is_png(npz[: -len(".npz")] + ".png")


def test_samples_of_other_settings_never_overwrite_each_other(run):
    """DDIM at 5 and at 10 steps from one checkpoint: two files, each saying what made it."""
    workdir, _ = run
    made = {}
    for steps in (5, 10):
        c = tiny_config("modes")
        c.sampling.method, c.sampling.num_steps = "ddim", steps
        c.sampling.num_samples = c.sampling.batch_size = 16
        made[steps] = modes.run("sample", c, workdir, stream=io.StringIO())
    files = [glob.glob(os.path.join(workdir, "samples", f"ckpt_8_ddim_nfe{n}_*.npz")) for n in made]
    assert [len(f) for f in files] == [1, 1], files
    for (path,) in files:
        with np.load(path) as f:
            steps = int(f["num_steps"])
            assert int(f["nfe"]) == steps and f"_nfe{steps}_" in path  # DDIM: one NFE a step
            np.testing.assert_array_equal(f["samples"], made[steps])


def test_samples_of_the_same_settings_are_refused_unless_overwrite(run):
    """The same checkpoint, settings and seed again: refused before anything is drawn, the file
    untouched; with overwrite the same samples are written again."""
    workdir, _ = run
    c = tiny_config("modes")
    c.sampling.method, c.sampling.num_steps, c.seed = "ddim", 3, 7
    c.sampling.num_samples = c.sampling.batch_size = 8
    first = modes.run("sample", c, workdir, stream=io.StringIO())
    (path,) = glob.glob(os.path.join(workdir, "samples", "ckpt_8_ddim_nfe3_seed7_*.npz"))
    before = pathlib.Path(path).read_bytes()
    log = io.StringIO()
    with pytest.raises(ValueError, match="--overwrite") as e:
        modes.run("sample", c, workdir, stream=log)
    assert path in str(e.value) and "--config.seed" in str(e.value)
    assert "sampling" not in log.getvalue()  # refused before the sampler ran
    assert pathlib.Path(path).read_bytes() == before
    os.utime(path, (0, 0))  # rewritten below (a new mtime): the same samples again
    again = modes.run("sample", c, workdir, stream=io.StringIO(), overwrite=True)
    np.testing.assert_array_equal(again, first)
    assert os.stat(path).st_mtime > 0
    with np.load(path) as f:
        np.testing.assert_array_equal(f["samples"], np.load(io.BytesIO(before))["samples"])
    c.seed = 8  # another seed: a new file
    modes.run("sample", c, workdir, stream=io.StringIO())
    assert len(glob.glob(os.path.join(workdir, "samples", "ckpt_8_ddim_nfe3_seed*_*.npz"))) == 2


def test_checkpoint_range_counts_snapshots_as_the_original():
    """begin_ckpt..end_ckpt number snapshots (step // snapshot_freq), the final one included."""
    from score_sde.run.modes.eval import checkpoint_steps

    class Ckpts:
        def snapshot_steps(self):
            return [50, 100, 150, 200, 201]

        def latest_step(self):
            return 204  # a newer preemption checkpoint

    def steps(begin, end):
        c = tiny_config("modes")
        c.training.snapshot_freq, c.eval.begin_ckpt, c.eval.end_ckpt = 50, begin, end
        return checkpoint_steps(from_config(c), Ckpts())

    assert steps(2, 3) == [100, 150]
    assert steps(3, -1) == [150, 201]  # 200 and 201 are both snapshot 4: the later one
    assert steps(-1, -1) == [204]
    assert steps(5, 9) == []


@pytest.mark.slow
def test_sample_mode_on_one_and_four_devices_agree_with_the_langevin_corrector(run):
    """One sampling path: the batch is sharded under jit, so the Langevin step's batch norm is
    taken over the whole batch and the samples do not depend on the device count."""
    workdir, _ = run
    c = tiny_config("modes")
    c.sampling.predictor, c.sampling.corrector = "reverse_diffusion", "langevin"
    c.sampling.num_samples = c.sampling.batch_size = 64
    c.model.num_scales = 50
    one = modes.run("sample", c, workdir, mesh=parallel.make_mesh(1), stream=io.StringIO())
    four = modes.run(
        "sample", c, workdir, mesh=parallel.make_mesh(4), stream=io.StringIO(), overwrite=True
    )
    assert one.shape == four.shape == (64, 2)
    assert np.isfinite(one).all() and np.std(one) > 0.1
    # the same draws, up to the order of floating-point reductions across devices
    np.testing.assert_allclose(one, four, rtol=1e-3, atol=1e-3)


def test_eval_mode_with_few_step_samplers_reports_their_exact_nfe(run):
    workdir, _ = run
    c = tiny_config("modes")
    c.eval.samplers = ("edm_heun", "dpmpp_2m", "ddim")
    c.eval.enable_loss = c.eval.enable_bpd = False
    c.sampling.num_steps = 6
    (results,) = modes.run("eval", c, workdir, stream=io.StringIO())
    # 6 noise levels: Heun 2 * 5 + 1 (the final denoising step), 2M and DDIM 5 + 1
    assert (results["nfe_edm_heun"], results["nfe_dpmpp_2m"], results["nfe_ddim"]) == (11, 6, 6)
    for method in c.eval.samplers:
        saved = np.load(os.path.join(workdir, "eval", "8", f"{method}.npz"))["samples"]
        assert saved.shape == (64, 2) and np.isfinite(saved).all()


@pytest.mark.slow
def test_eval_waits_for_the_checkpoints_training_writes(tmp_path):
    """config.eval.wait_for_checkpoints: the eval job (here a thread) evaluates snapshots 1..3 as
    the training run writes them and stops after snapshot 3 (end_ckpt)."""
    import threading

    workdir = str(tmp_path / "run")
    c = tiny_config("modes")
    t = c.training
    t.n_iters, t.snapshot_freq, t.snapshot_freq_for_preemption = 4, 2, 100
    t.snapshot_sampling = False
    modes.run("train", c, workdir, stream=io.StringIO())  # snapshots 1 (step 2) and 2 (step 4)
    e = c.eval
    e.begin_ckpt, e.end_ckpt, e.wait_for_checkpoints, e.poll_seconds = 1, 3, True, 0.2
    e.enable_bpd, e.samplers, e.num_samples = False, ("pc",), 16
    results = []
    job = threading.Thread(target=lambda: results.extend(modes.run("eval", c, workdir)))
    job.start()
    t.n_iters = 6  # the run goes on to snapshot 3 (step 6) while eval waits
    modes.run("train", c, workdir, stream=io.StringIO())
    job.join(timeout=300)
    assert not job.is_alive()
    assert [r["step"] for r in results] == [2, 4, 6]
    for step in (2, 4, 6):
        assert os.path.isfile(os.path.join(workdir, "eval", str(step), "results.json"))
