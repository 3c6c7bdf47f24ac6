"""Train, evaluate or sample a score-based model: the one entry point.

    python launch.py          # the embedded default: a 2-D toy, about a minute on a CPU
    python launch.py --config configs/toy/checkerboard.py --workdir runs/cb --mode train
    python launch.py --config configs/toy/gmm.py --workdir runs/gmm --config.training.n_iters=2000
    python launch.py --config ... --workdir ... --mode eval     # or --mode sample

Eval mode on images with config.eval.enable_sampling also reports FID/IS/KID: it needs the
converted Inception weights (python -m score_sde.evaluation.inception --help) and reference
statistics (python -m score_sde.evaluation.reference_stats --help); it says so if either is missing.
Bad flags, config fields, work directories or checkpoints: one line on stderr, exit status 2.

Several processes (one per host): pass --coordinator=HOST:PORT --num_processes=N --process_id=I,
or --coordinator=auto where JAX detects the cluster (SLURM, TPU pods, Open MPI).
Kept short on purpose: the logic lives in score_sde.modes.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_CONFIG = os.path.join(_HERE, "configs", "default.py")


def _fail_on_flag_error(error: Exception) -> None:
    """One clear line (flag, value, fix) instead of a traceback, then exit status 2."""
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    from score_sde.modes.config import explain_flag_error

    print(f"error: {explain_flag_error(sys.argv, error, _DEFAULT_CONFIG)}", file=sys.stderr)
    sys.exit(2)


try:  # the config file and its --config.* overrides are applied here, at definition time
    config_flags.DEFINE_config_file(
        "config",
        _DEFAULT_CONFIG,
        "Config file (a Python file with get_config()).",
        lock_config=True,
    )
except Exception as e:  # noqa: BLE001
    _fail_on_flag_error(e)
flags.DEFINE_string("workdir", "runs/default", "Directory for checkpoints, logs, samples.")
flags.DEFINE_string("mode", "train", "train | eval | sample | train_classifier")
flags.DEFINE_string(
    "coordinator", None, "HOST:PORT of process 0 for multi-process runs, or 'auto'."
)
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    from score_sde import modes, parallel

    config_file = config_flags.get_config_filename(FLAGS["config"])
    if not os.path.isfile(config_file):
        _fail_on_flag_error(FileNotFoundError(config_file))
    config = FLAGS.config
    try:
        parallel.maybe_initialize_distributed(
            FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id
        )
        modes.run(FLAGS.mode, config, FLAGS.workdir)
    except (ValueError, FloatingPointError) as e:
        print("error: " + " ".join(str(e).splitlines()), file=sys.stderr)
        sys.exit(2)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except Exception as e:  # noqa: BLE001
        _fail_on_flag_error(e)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
