r"""Reference statistics of a dataset split for FID/KID, in pytorch-fid's `.npz` layout.

    python -m score_sde.evaluation.reference_stats \
        --config=configs/vp/cifar10_ddpmpp_continuous.py --split=train \
        --out=assets/stats/cifar10_train_stats.npz [--batch_size=0] \
        [--weights=~/.cache/score_sde/inception_fid.npz] [--max_examples=0] \
        [--keep_activations=10000]

Writes `mu` [2048], `sigma` [2048, 2048] (float64) and the first `keep_activations` pool_3 rows as
`pool_3` (for KID; pytorch-fid ignores it). Runs on every device (and every process: start it
like launch.py, with jax.distributed initialized) and gathers the activations. Before the long
pass it prints the expected time, e.g. `reference statistics: 50000 images on 1 cpu device(s),
about 5.6 h at 2.5 img/s (a GPU takes minutes)`.
"""

from __future__ import annotations

import sys
import time

import jax
from absl import app, flags

flags.DEFINE_string("split", "train", "Dataset split: train | test.")
flags.DEFINE_string("out", None, "Output .npz path.", required=True)
flags.DEFINE_integer(
    "batch_size",
    0,
    "Global batch size, rounded up to a multiple of the device count. 0: 50 per device on CPU "
    "(more is no faster there), 500 per device on GPU/TPU (about 4 GiB of activations each; "
    "lower it if a device runs out of memory).",
)
flags.DEFINE_string(
    "weights", None, "Converted Inception weights (.npz); default as load_inception."
)
flags.DEFINE_integer("max_examples", 0, "Use only the first N examples (0: the whole split).")
flags.DEFINE_integer("keep_activations", 10_000, "Rows of pool_3 kept in the file for KID.")
FLAGS = flags.FLAGS
CPU_PER_DEVICE, ACCELERATOR_PER_DEVICE = 50, 500  # --batch_size=0


def global_batch_size(requested: int, devices: int, backend: str) -> int:
    """--batch_size as a multiple of `devices` (the last batch is padded and masked); 0: 50 per
    device on CPU, 500 per device on GPU/TPU."""
    if requested == 0:
        return (CPU_PER_DEVICE if backend == "cpu" else ACCELERATOR_PER_DEVICE) * devices
    return -(-requested // devices) * devices


def main(argv, config_path: str, overrides: dict) -> None:
    del argv
    from score_sde import config as config_lib
    from score_sde import parallel
    from score_sde.config import fail
    from score_sde.evaluation.evaluator import compute_dataset_statistics

    if not config_path:
        fail("--config is required (the config whose config.data names the dataset)")
    try:
        data = config_lib.load(config_path, overrides).data
    except ValueError as e:
        fail(e)
    mesh = parallel.make_mesh()
    if FLAGS.batch_size < 0:
        fail(f"--batch_size={FLAGS.batch_size} must be positive (or 0: chosen per backend)")
    batch = global_batch_size(FLAGS.batch_size, mesh.devices.size, jax.default_backend())
    start = time.time()
    try:
        stats = compute_dataset_statistics(
            data,
            FLAGS.split,
            FLAGS.out,
            batch_size=batch,
            weights=FLAGS.weights,
            mesh=mesh,
            max_examples=FLAGS.max_examples,
            keep_activations=FLAGS.keep_activations,
        )
    except ValueError as e:
        fail(e)
    if jax.process_index() == 0:
        n = len(stats["pool_3"]) if "pool_3" in stats else "?"
        print(f"wrote {FLAGS.out} ({n} activations kept) in {time.time() - start:.1f}s")


if __name__ == "__main__":
    from score_sde.config import answer_help, split_argv

    path, config_overrides, rest = split_argv(sys.argv[1:], "")
    names = ["split", "out", "batch_size", "weights", "max_examples", "keep_activations"]
    answer_help(rest, __doc__, FLAGS, names)
    app.run(lambda argv: main(argv, path, config_overrides), argv=[sys.argv[0], *rest])
