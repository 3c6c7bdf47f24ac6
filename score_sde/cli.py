"""Train, evaluate or sample a score-based model: the one entry point (`score-sde`, `launch.py`).

    score-sde                   # the embedded default: a 2-D toy, about a minute on a CPU
    score-sde --config=toy/checkerboard --workdir=runs/cb --mode=train
    score-sde --config=configs/toy/gmm.py --workdir=runs/gmm --config.training.n_iters=2000
    score-sde --config=... --workdir=... --mode=eval     # or --mode=sample
    score-sde --config=... --dry_run                     # print the resolved config

--config takes a config file's path or the name of a shipped config (`vp/cifar10_ddpmpp_continuous`,
see score_sde.config.shipped_configs). Every field of score_sde.config can be set with
--config.<section>.<field>=VALUE, for every config (fields a file does not set take the original
score_sde's defaults).

Exit status: 0 done; 2 bad flags, config fields, data, work directories or checkpoints (one line on
stderr); 128 + the signal (143 SIGTERM, 130 SIGINT / Ctrl-C) for a run stopped after saving its
preemption checkpoint, so a scheduler can tell "preempted, requeue" from "done".

Several processes (one per host): pass --coordinator=HOST:PORT --num_processes=N --process_id=I,
or --coordinator=auto where JAX detects the cluster (SLURM, TPU pods, Open MPI).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging

from score_sde.config.command_line import fail

DEFAULT_CONFIG = "default"

flags.DEFINE_string(
    "workdir", "runs/default", "Directory (or gs:// URL) for checkpoints, logs, samples."
)
flags.DEFINE_string("mode", "train", "train | eval | sample | train_classifier")
flags.DEFINE_bool("dry_run", False, "Print the resolved config and the network size, then exit.")
flags.DEFINE_string(
    "coordinator", None, "HOST:PORT of process 0 for multi-process runs, or 'auto'."
)
flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.DEFINE_integer(
    "init_timeout", 60, "Seconds to wait for the coordinator and every peer at start-up."
)
flags.DEFINE_integer(
    "heartbeat_timeout", 60, "Seconds after which a silent peer ends a multi-process run."
)
FLAGS = flags.FLAGS


def _main(argv, config_path: str, overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
    from score_sde import config as config_lib
    from score_sde.run import parallel

    try:  # every flag and field is checked before anything is created or written
        parallel.check_process_flags(
            FLAGS.coordinator,
            FLAGS.num_processes,
            FLAGS.process_id,
            FLAGS.init_timeout,
            FLAGS.heartbeat_timeout,
        )
        cfg = config_lib.load(config_path, overrides)
    except ValueError as e:
        fail(str(e))
    if FLAGS.dry_run:
        from score_sde import models

        n = models.count_params(models.abstract_params(cfg.model, cfg.data))
        print(json.dumps(cfg.to_dict(), indent=2))
        print(f"{config_path}: {cfg.model.name} with {n:,} parameters, mode {FLAGS.mode}")
        return
    from score_sde.run import modes

    try:
        parallel.maybe_initialize_distributed(
            FLAGS.coordinator,
            FLAGS.num_processes,
            FLAGS.process_id,
            init_timeout=FLAGS.init_timeout,
            heartbeat_timeout=FLAGS.heartbeat_timeout,
        )
        modes.run(FLAGS.mode, cfg, FLAGS.workdir)
    except (ValueError, FloatingPointError) as e:
        fail(str(e))
    except modes.Preempted as e:
        print(str(e), file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (start-up, eval, sampling)
        print("interrupted (SIGINT): stopped before the next checkpoint", file=sys.stderr)
        sys.exit(128 + 2)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(f"{e}; see {argv[0]} --helpfull")


def main(argv: list[str] | None = None) -> None:
    """Runs the command line `argv` (default sys.argv); exits with the status described above."""
    from score_sde.config import split_argv

    argv = sys.argv if argv is None else argv
    path, overrides, rest = split_argv(argv[1:], DEFAULT_CONFIG)
    app.run(
        lambda args: _main(args, path, overrides),
        argv=[argv[0], *rest],
        flags_parser=_parse_flags,
    )


if __name__ == "__main__":
    main()
