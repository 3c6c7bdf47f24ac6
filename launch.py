"""The launcher from a checkout: the same as the installed `score-sde` command.

    python launch.py          # the embedded default: a 2-D toy, about a minute on a CPU
    python launch.py --config configs/toy/checkerboard.py --workdir runs/cb --mode train
    python launch.py --config vp/cifar10_ddpmpp_continuous --workdir runs/c10 --dry_run

Flags and exit statuses: score_sde/cli.py.
"""

from score_sde.cli import main

if __name__ == "__main__":
    main()
