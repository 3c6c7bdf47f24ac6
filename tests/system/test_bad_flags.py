"""Bad command lines through the real `launch.py`, one subprocess per case: every refused command
exits with status 2, prints one `error:` line naming the flag or field, no traceback, and leaves
the work directory and the current directory exactly as they were (no file or folder created,
changed or removed), because everything is checked before anything is written.

Classes: values that do not parse or do not fit their field, multi-process flags, fields that only
matter late in a run (samplers, predictors, seeds), commands on work directories that do not exist,
fields put in the wrong section. The cases run four at a time (a module fixture); each is then
one test.
"""

import concurrent.futures
import os
import pathlib
import subprocess
import sys

import pytest

from tests.helpers import ROOT, assert_refused, file_tree

MULTI = ["--num_processes=2", "--process_id=0"]

# (id, flags after --config=toy/gmm, what the one error line must contain)
CASES = [
    # values that do not parse or do not fit
    ("tuple unclosed", ["--config.model.nf=(1,2"], ["--config.model.nf=(1,2", "type int"]),
    ("malformed literal", ["--config.eval.samplers=(('pc',)"], ["--config.eval.samplers"]),
    ("int too large", ["--config.training.n_iters=99999999999999999999"], ["config.training.n_iters (99999999999999999999) is too large"]),
    ("int as float", ["--config.training.batch_size=1e3"], ["config.training.batch_size", "type int"]),
    ("int as text", ["--config.model.nf=wide"], ["--config.model.nf=wide", "type int"]),
    ("float as text", ["--config.sampling.snr=high"], ["config.sampling.snr", "type float"]),
    ("float overflow", ["--config.optim.lr=1e999"], ["config.optim.lr (inf) must be a finite"]),
    ("negative steps", ["--config.training.n_iters=-5"], ["config.training.n_iters (-5) must be positive"]),
    ("zero tolerance", ["--config.eval.rtol=0"], ["config.eval.rtol (0.0) must be positive"]),
    ("bool as text", ["--config.training.snapshot_sampling=maybe"], ["type bool"]),
    ("tuple of text", ["--config.eval.samplers=pc;ode"], ["config.eval.samplers"]),
    ("seed as text", ["--config.seed=lucky"], ["config.seed takes an int"]),
    ("seed negative", ["--config.seed=-1"], ["config.seed must be an int in [0, 2147483647]"]),
    ("seed too large", ["--config.seed=99999999999"], ["config.seed must be an int in [0, 2147483647]"]),
    ("zero channels", ["--config.data.dim=0"], ["config.data.dim (0) must be positive"]),
    # multi-process flags, refused before jax.distributed.initialize
    ("coordinator without port", ["--coordinator=localhost", *MULTI], ["--coordinator='localhost' must be HOST:PORT"]),
    ("port out of range", ["--coordinator=localhost:99999", *MULTI], ["--coordinator='localhost:99999'", "1..65535"]),
    ("port not a number", ["--coordinator=localhost:http", *MULTI], ["--coordinator='localhost:http'"]),
    ("port zero", ["--coordinator=localhost:0", *MULTI], ["1..65535"]),
    ("empty host", ["--coordinator=:1234", *MULTI], ["--coordinator=':1234'"]),
    ("host with a space", ["--coordinator=my host:1234", *MULTI], ["--coordinator='my host:1234'"]),
    ("host with a path", ["--coordinator=http://h:1234", *MULTI], ["--coordinator='http://h:1234'"]),
    ("process id too large", ["--coordinator=localhost:1234", "--num_processes=2", "--process_id=2"], ["--process_id=2 must lie in [0, --num_processes=2)"]),
    ("process id negative", ["--coordinator=localhost:1234", "--num_processes=2", "--process_id=-1"], ["--process_id=-1"]),
    ("no processes", ["--coordinator=localhost:1234", "--num_processes=0", "--process_id=0"], ["--num_processes=0 must be >= 1"]),
    ("init timeout zero", ["--init_timeout=0"], ["--init_timeout=0 must be at least 1"]),
    ("heartbeat negative", ["--heartbeat_timeout=-5"], ["--heartbeat_timeout=-5 must be at least 1"]),
    ("coordinator alone", ["--coordinator=localhost:1234"], ["needs --num_processes and --process_id"]),
    ("processes without coordinator", ["--num_processes=2"], ["--num_processes=2 needs --coordinator"]),
    # fields that matter only late in a run, checked at the boundary
    ("unknown predictor", ["--config.sampling.predictor=heun"], ["config.sampling.predictor ('heun') is not a predictor", "reverse_diffusion"]),
    ("unknown corrector", ["--config.sampling.corrector=hmc"], ["config.sampling.corrector ('hmc') is not a corrector", "langevin"]),
    ("unknown method", ["--config.sampling.method=heunn"], ["config.sampling.method ('heunn')", "edm_heun"]),
    ("unknown eval sampler", ["--config.eval.samplers=('pc','eulerr')"], ["each entry of config.eval.samplers ('eulerr')"]),
    ("ancestral on sub-VP", ["--config.training.sde=subvpsde", "--config.sampling.predictor=ancestral_sampling"], ["config.sampling.predictor='ancestral_sampling'", "subvpsde"]),
    ("ancestral flow", ["--config.sampling.predictor=ancestral_sampling", "--config.sampling.probability_flow=True"], ["no probability-flow variant"]),
    ("unknown trace", ["--config.eval.hutchinson_type=exactish"], ["config.eval.hutchinson_type ('exactish')"]),
    ("unknown discretization", ["--config.sampling.discretization=log"], ["config.sampling.discretization ('log')"]),
    ("unknown task", ["--config.condition.task=superres"], ["config.condition.task ('superres')"]),
    ("unknown dtype", ["--config.model.dtype=float16"], ["config.model.dtype ('float16')"]),
    # work directories that do not exist are not created by a command that only reads them
    ("eval, no workdir", ["--mode=eval", "--workdir={root}/missing"], ["--workdir {root}/missing does not exist", "--mode=train"]),
    ("sample, no workdir", ["--mode=sample", "--workdir={root}/missing"], ["--workdir {root}/missing does not exist"]),
    ("sample, relative workdir elsewhere", ["--mode=sample", "--workdir=runs/mine"], ["--workdir runs/mine ({root}/cwd/runs/mine) does not exist", "run from the directory it is relative to"]),
    ("unknown mode", ["--mode=serve"], ["--mode='serve' is not a mode"]),
    # a field in the wrong section: the section that has it is named
    ("model field in training", ["--config.training.nf=8"], ["did you mean config.model.nf?"]),
    ("training field in model", ["--config.model.batch_size=8"], ["did you mean config.training.batch_size?"]),
    ("training field in sampling", ["--config.sampling.n_iters=5"], ["did you mean config.training.n_iters?"]),
    ("model field in optim", ["--config.optim.ema_rate=0.9"], ["did you mean config.model.ema_rate?"]),
    ("training field in data", ["--config.data.sde=vesde"], ["did you mean config.training.sde?"]),
]  # fmt: skip


def _run(root: pathlib.Path, flags: list[str]):
    cwd, workdir = root / "cwd", root / "run"
    for d in (cwd, workdir):
        d.mkdir(parents=True)
        (d / "notes.txt").write_text("keep me")
    flags = [f.replace("{root}", str(root)) for f in flags]
    if not any(f.startswith("--workdir") for f in flags):
        flags.append(f"--workdir={workdir}")
    before = file_tree(root)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "--config=toy/gmm", *flags],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return proc, before, file_tree(root)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_flags")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = {
            name: pool.submit(_run, root / str(i), flags)
            for i, (name, flags, _) in enumerate(CASES)
        }
        return {name: (root / str(i), *f.result()) for i, (name, f) in enumerate(futures.items())}


def test_the_table_is_large():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("name, flags, needles", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_changed(outcomes, name, flags, needles):
    root, proc, before, after = outcomes[name]
    assert_refused(proc, [n.replace("{root}", str(root)) for n in needles], before, after)
