"""Test setup: fake four CPU devices before JAX starts, so sharded code paths run on one CPU."""

import itertools
import os

_flag = "--xla_force_host_platform_device_count=4"
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for the session and the launcher processes it starts: the same small
# networks are compiled by many tests (a fresh directory per session: nothing carries over).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="score_sde_xla_cache_")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"

import pytest  # noqa: E402

# Tests sharing a session-trained run (about a minute of training each) are slow, and go to one
# xdist worker (`--dist loadgroup`) so that each run is trained once per session.
_GROUPS = {"trained_digits": "digits", "trained_digits_edm": "digits_edm"}
# Module fixtures that train or build something (seconds to minutes): the tests of the module that
# use them go to one worker too, so the fixture is set up once, not once per worker.
_MODULE_FIXTURES = {
    "test_api": "toy",
    "test_api_sampler": "toy",
    "test_autoguide_sampling": "runs",
    "test_bad_flags": "outcomes",
    "test_checkpoint_faults": "tiny_run",
    "test_convert_cli": "sources",
    "test_eval_fid": "setup",
    "test_export": "run",
    "test_faults_hand": "base",
    "test_faults_signals": "tiny_run",
    "test_gcs_runs": "local_run",
    "test_interrupted_sampling": "tiny_run",
    "test_modes": "run",
    "test_operator_mistakes": "outcomes",
    "test_package": "installed",
    "test_phema_run": "run",
    "test_pictures": "toy_run",
    "test_quality_nfe": "run",
    "test_run_identity": "runs",
    "test_wandb": "run",
}


def _group(item) -> tuple[str, bool] | None:
    """(xdist group, slow) of a test sharing an expensive fixture, else None."""
    names = getattr(item, "fixturenames", ())
    for fixture, group in _GROUPS.items():
        if fixture in names:
            return group, True
    module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
    if _MODULE_FIXTURES.get(module) in names:
        return module, False
    return None


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items):
    for item in items:
        found = _group(item)
        if found is not None:
            item.add_marker(pytest.mark.xdist_group(found[0]))
            if found[1]:
                item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    """Refuse, at once and in one line, a pytest whose node ids pytest-xdist 3.8 cannot group
    (pytest-dev/pytest-xdist#1386): `-n 2` would train every shared run on both workers."""
    version = tuple(int(v) for v in pytest.__version__.split(".")[:2] if v.isdigit())
    xdist = config.getoption("numprocesses", None) and config.getoption("dist", None) == "loadgroup"
    if xdist and version >= (9, 2):
        raise pytest.UsageError(
            f"pytest {pytest.__version__} turns off pytest-xdist's --dist loadgroup (pytest-dev/"
            "pytest-xdist#1386): pip install -e '.[test]' installs the pytest < 9.2 it needs"
        )


@pytest.fixture(scope="session")
def gcs_server():
    """A GCS emulator (tests/gcs.py) for the session; TensorStore and gcsfs point at it."""
    from tests.gcs import GCSEmulator

    server = GCSEmulator.start()
    yield server
    server.stop()


_BUCKETS = itertools.count()


@pytest.fixture
def bucket(gcs_server):
    """A new empty bucket on the emulator: its URL, gs://<name>."""
    return gcs_server.bucket(f"test-{os.getpid()}-{next(_BUCKETS)}")


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """The class-conditional digits config (configs/digits/conditional.py, label dropout 0.1)
    trained for 600 steps through the launcher: (config, workdir). Trained once per session and
    shared by tests/system/test_digits.py (unconditional: null label) and
    tests/method/test_controllable_digits.py."""
    import io

    from configs.digits import conditional
    from score_sde.run import modes

    c = conditional.get_config()
    t = c.training
    t.n_iters = t.snapshot_freq = t.eval_freq = 600
    t.snapshot_sampling = False
    t.eval_after_training = False
    c.model.num_scales = 100  # sampler steps
    c.sampling.num_samples = c.sampling.batch_size = 200
    workdir = str(tmp_path_factory.mktemp("digits_cond"))
    modes.run("train", c, workdir, stream=io.StringIO())
    return c, workdir


@pytest.fixture(scope="session")
def trained_digits_edm(tmp_path_factory):
    """configs/digits/edm.py (the class-conditional digits DDPM++ with EDM's loss and
    preconditioning) trained for 600 steps like `trained_digits`: (config, workdir)."""
    import io

    from configs.digits import edm
    from score_sde.run import modes

    c = edm.get_config()
    t = c.training
    t.n_iters = t.snapshot_freq = t.eval_freq = 600
    t.snapshot_sampling = False
    workdir = str(tmp_path_factory.mktemp("digits_edm"))
    modes.run("train", c, workdir, stream=io.StringIO())
    return c, workdir


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The work directory of the tiny checkpointed run (tests/helpers.py OVERRIDES: snapshots
    checkpoints/{10,20,24}, preemption slot checkpoints-meta/16), trained once per session and
    worker. Do not modify: tests copy it."""
    import io

    from score_sde.run import modes
    from tests.helpers import tiny_config

    workdir = tmp_path_factory.mktemp("faults") / "run"
    modes.run("train", tiny_config("checkpoint"), str(workdir), stream=io.StringIO())
    return workdir


@pytest.fixture(scope="module")
def tiny_exp():
    """The experiment of the tiny checkpointed run (its state_like() restores tiny_run's steps)."""
    from score_sde import parallel
    from score_sde.config import from_config
    from score_sde.run import experiment
    from tests.helpers import tiny_config

    return experiment.build(from_config(tiny_config("checkpoint")), parallel.make_mesh())
