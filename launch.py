"""Train, evaluate or sample a score-based model: the one entry point.

    python launch.py          # the embedded default: a 2-D toy, about a minute on a CPU
    python launch.py --config configs/toy/checkerboard.py --workdir runs/cb --mode train
    python launch.py --config configs/toy/gmm.py --workdir runs/gmm --config.training.n_iters=2000
    python launch.py --config ... --workdir ... --mode eval     # or --mode sample
    python launch.py --config ... --dry_run                     # print the resolved config

Every field of score_sde.config can be set with --config.<section>.<field>=VALUE, for every
config file (fields a file does not set take the original score_sde's defaults).
Bad flags, config fields, work directories or checkpoints: one line on stderr, exit status 2.
A run stopped by SIGTERM after saving its preemption checkpoint exits with status 143.

Several processes (one per host): pass --coordinator=HOST:PORT --num_processes=N --process_id=I,
or --coordinator=auto where JAX detects the cluster (SLURM, TPU pods, Open MPI).
Kept short on purpose: the logic lives in score_sde.config and score_sde.modes.
"""

import json
import os
import sys

from absl import app, flags, logging

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")
EXIT_BAD_INPUT, EXIT_PREEMPTED = 2, 143

flags.DEFINE_string("workdir", "runs/default", "Directory for checkpoints, logs, samples.")
flags.DEFINE_string("mode", "train", "train | eval | sample | train_classifier")
flags.DEFINE_bool("dry_run", False, "Print the resolved config and the network size, then exit.")
flags.DEFINE_string(
    "coordinator", None, "HOST:PORT of process 0 for multi-process runs, or 'auto'."
)
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
FLAGS = flags.FLAGS


def _fail(message: str) -> None:
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


def main(argv, config_path: str, overrides: dict[str, str]):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
    from score_sde import config as config_lib

    try:
        cfg = config_lib.load(config_path, overrides)
    except ValueError as e:
        _fail(str(e))
    if FLAGS.dry_run:
        from score_sde import models

        n = models.count_params(models.abstract_params(cfg.model, cfg.data))
        print(json.dumps(cfg.to_dict(), indent=2))
        print(f"{config_path}: {cfg.model.name} with {n:,} parameters, mode {FLAGS.mode}")
        return
    from score_sde import modes, parallel

    try:
        parallel.maybe_initialize_distributed(
            FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id
        )
        modes.run(FLAGS.mode, cfg, FLAGS.workdir)
    except (ValueError, FloatingPointError) as e:
        _fail(str(e))
    except modes.Preempted:
        sys.exit(EXIT_PREEMPTED)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(f"{e}; see python launch.py --helpfull")


if __name__ == "__main__":
    from score_sde.config import split_argv

    path, config_overrides, rest = split_argv(sys.argv[1:], _DEFAULT_CONFIG)
    app.run(
        lambda argv: main(argv, path, config_overrides),
        argv=[sys.argv[0], *rest],
        flags_parser=_parse_flags,
    )
