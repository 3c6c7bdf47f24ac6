"""Train, evaluate or sample a score-based model: the one entry point (`score-sde`, `launch.py`).

    score-sde                   # the embedded default: a 2-D toy, about a minute on a CPU
    score-sde --help            # modes, flags, the most used overrides; `score-sde MODE --help`
    score-sde --config=toy/checkerboard --workdir=runs/cb --mode=train
    score-sde --config=configs/toy/gmm.py --workdir=runs/gmm --config.training.n_iters=2000
    score-sde --config=... --workdir=... --mode=eval     # or --mode=sample
    score-sde sample --config=... --workdir=...          # the mode may come first, as a word
    score-sde --config=... --dry_run                     # print the resolved config
    score-sde fields [SECTION]                           # every config field and its meaning
    score-sde export --workdir=W --out=model.safetensors # EMA params + config in one file

--config takes a config file's path or the name of a shipped config (`vp/cifar10_ddpmpp_continuous`,
see score_sde.config.shipped_configs). Every field of score_sde.config can be set with
--config.<section>.<field>=VALUE, for every config (fields a file does not set take the original
score_sde's defaults).

Exit status: 0 done; 2 bad flags, config fields, data, work directories or checkpoints, or a batch
too large for memory (one line on stderr); 128 + the signal (143 SIGTERM, 130 SIGINT / Ctrl-C) for
a run stopped after saving its preemption checkpoint (other modes: stopped with nothing partial
written), so a scheduler can tell "preempted, requeue" from "done".

Several processes (one per host): pass --coordinator=HOST:PORT --num_processes=N --process_id=I,
or --coordinator=auto where JAX detects the cluster (SLURM, TPU pods, Open MPI).
"""

from __future__ import annotations

import json
import signal
import sys

from absl import app, flags, logging

from score_sde.config.command_line import fail

DEFAULT_CONFIG = "default"

flags.DEFINE_string(
    "workdir", "runs/default", "Directory (or gs:// URL) for checkpoints, logs, samples."
)
flags.DEFINE_string(
    "mode", "train", "train | eval | sample | train_classifier | plot (or first word)"
)
flags.DEFINE_bool("dry_run", False, "Print the resolved config and the network size, then exit.")
flags.DEFINE_bool(
    "overwrite", False, "sample mode: write samples again over a file of the same settings."
)
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

HELP = """usage: score-sde [MODE] [--config=CONFIG] [--workdir=DIR] [--config.SECTION.FIELD=VALUE ...]

Train, evaluate or sample a score-based generative model (Song et al., ICLR 2021).

modes (the first word, or --mode=MODE; default train):
{modes}

flags:
  --config=CONFIG   a config file or a shipped config's name (vp/cifar10_ddpmpp_continuous,
                    digits/ddpmpp, toy/checkerboard); default: the embedded 2-D toy
  --workdir=DIR     checkpoints, logs and samples (default runs/default; gs:// URLs work)
  --config.SECTION.FIELD=VALUE   any config field, for every config (sections: training,
                    sampling, eval, optim, model, data, condition, classifier, logging)
  --dry_run         print the resolved config and the network size, then exit
  --overwrite       sample: rewrite samples/ files of the same settings (else refused)
  --coordinator=HOST:PORT|auto --num_processes=N --process_id=I   one process per host

most used overrides:
  --config.training.n_iters=1000 --config.training.batch_size=128
  --config.data.path=data/cifar10.npz   (from python -m score_sde.data.prepare)
  --config.sampling.method=pc|ode|heun|dpm2m|dpm3m|ddim --config.sampling.num_steps=10
  --config.sampling.num_samples=1000 --config.eval.begin_ckpt=-1 --config.eval.enable_bpd=True

examples:
  score-sde                                    # train + evaluate the 2-D toy (about a minute)
  score-sde train --config=digits/ddpmpp --workdir=runs/digits
  score-sde sample --config=digits/ddpmpp --workdir=runs/digits --config.sampling.method=heun

`score-sde MODE --help` describes one mode; `--helpfull` lists every flag.
Exit status: 0 done; 2 bad input (one `error:` line); 128 + signal after a preemption save."""

# mode: (what it does, the config fields most used with it, an example)
MODE_HELP = {
    "train": (
        "train by denoising score matching (or config.training.loss=edm); resumes from the newest "
        "checkpoint of --workdir",
        (
            "training.n_iters",
            "training.batch_size",
            "training.snapshot_freq",
            "training.log_freq",
            "optim.lr",
            "model.ema_rate",
            "data.path",
        ),
        "score-sde train --config=vp/cifar10_ddpmpp_continuous --workdir=runs/c10 "
        "--config.data.path=data/cifar10.npz",
    ),
    "eval": (
        "evaluate checkpoints begin_ckpt..end_ckpt: DSM loss, FID/IS/KID of samples, bits/dim; "
        "writes eval/<step>/results.json (a killed eval resumes at its next round)",
        (
            "eval.begin_ckpt",
            "eval.end_ckpt",
            "eval.enable_sampling",
            "eval.enable_bpd",
            "eval.num_samples",
            "eval.samplers",
            "eval.inception_weights",
            "eval.fid_stats",
        ),
        "score-sde eval --config=digits/ddpmpp --workdir=runs/digits "
        "--config.eval.enable_sampling=True --config.eval.begin_ckpt=-1",
    ),
    "sample": (
        "write samples of the newest checkpoint (EMA) to samples/ as .npz and .png; with "
        "config.condition: class-conditional, inpainting, colorization",
        (
            "sampling.method",
            "sampling.num_steps",
            "sampling.num_samples",
            "sampling.predictor",
            "sampling.corrector",
            "condition.task",
            "condition.scale",
        ),
        "score-sde sample --config=digits/ddpmpp --workdir=runs/digits "
        "--config.sampling.method=dpm2m --config.sampling.num_steps=10",
    ),
    "train_classifier": (
        "train the noise-conditional classifier of classifier guidance (in <workdir>/classifier); "
        "then sample with --config.condition.guidance=classifier",
        ("classifier.n_iters", "classifier.batch_size", "classifier.lr", "classifier.nf"),
        "score-sde train_classifier --config=digits/conditional --workdir=runs/digits_cond",
    ),
    "plot": (
        "draw the loss curve and the newest sample picture of --workdir as PNGs under "
        "<workdir>/plots and print their paths; reads only the work directory (no config)",
        (),
        "score-sde plot --workdir=runs/digits",
    ),
}


def mode_help(mode: str) -> str:
    """The `score-sde MODE --help` text of one mode."""
    what, fields, example = MODE_HELP[mode]
    used = "\n".join(f"  --config.{f}" for f in fields)
    args = (
        "[--config=CONFIG] [--workdir=DIR] [--config.SECTION.FIELD=VALUE]"
        if fields
        else "--workdir=DIR"
    )
    return (
        f"usage: score-sde {mode} {args}\n\n{mode}: {what}.\n\n"
        + (f"most used:\n{used}\n\n" if fields else "")
        + f"example:\n  {example}\n\n`score-sde --help` for every mode and flag."
    )


def usage() -> str:
    """The `score-sde --help` text."""
    modes = "\n".join(f"  {m:<17} {MODE_HELP[m][0].split(';')[0]}" for m in MODE_HELP)
    modes += f"\n  {'export':<17} {EXPORT_WHAT}"
    return HELP.format(modes=modes)


def _mode_and_help(args: list[str]) -> list[str]:
    """A leading mode word becomes --mode; --help / -h print our usage (of the mode, if one is
    given) and exit 0."""
    if args and args[0] in MODE_HELP:
        args = [f"--mode={args[0]}", *args[1:]]
    if "--help" in args or "-h" in args:
        modes = [a.split("=", 1)[1] for a in args if a.startswith("--mode=")]
        print(mode_help(modes[-1]) if modes and modes[-1] in MODE_HELP else usage())
        sys.exit(0)
    return args


def _main(argv, config_path: str, overrides: dict[str, str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}; flags look like --name=value")
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
    from score_sde import config as config_lib
    from score_sde import parallel

    try:  # every flag and field is checked before anything is created or written
        parallel.check_process_flags(
            FLAGS.coordinator,
            FLAGS.num_processes,
            FLAGS.process_id,
            FLAGS.init_timeout,
            FLAGS.heartbeat_timeout,
        )
        cfg = config_lib.load(config_path, overrides)
        if FLAGS.overwrite and FLAGS.mode != "sample":
            raise ValueError(
                f"--overwrite is for sample mode (samples/ files); --mode={FLAGS.mode} never "
                "overwrites: drop --overwrite"
            )
    except ValueError as e:
        fail(str(e))
    if FLAGS.dry_run:
        from score_sde import models

        n = models.count_params(models.abstract_params(cfg.model, cfg.data))
        print(json.dumps(cfg.to_dict(), indent=2))
        print(f"{config_path}: {cfg.model.name} with {n:,} parameters, mode {FLAGS.mode}")
        return
    from score_sde.run import modes
    from score_sde.store import fs

    # Ctrl-C (SIGINT) stops every mode the same way, also when the launcher was started with it
    # ignored (`python launch.py ... &` in a script): training's loop takes it over, the rest
    # see KeyboardInterrupt below. SIGTERM (a scheduler's stop) likewise: the cleanup runs
    # (no half-written file, a new run's directory taken back) and the status is 143.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        parallel.maybe_initialize_distributed(
            FLAGS.coordinator,
            FLAGS.num_processes,
            FLAGS.process_id,
            init_timeout=FLAGS.init_timeout,
            heartbeat_timeout=FLAGS.heartbeat_timeout,
        )
        _print_devices()
        modes.run(
            FLAGS.mode, cfg, FLAGS.workdir, **({"overwrite": True} if FLAGS.overwrite else {})
        )
    except (ValueError, FloatingPointError) as e:
        fail(str(e))
    except OSError as e:  # a file of the run (log, samples, results) on a full or read-only disk
        reason = fs.storage_failure(e)
        if reason is None:
            raise
        free = fs.free_space(e.filename or FLAGS.workdir)
        space = "" if free is None else f"; {fs.size_text(free)} free there"
        fail(
            f"cannot write {e.filename or FLAGS.workdir} ({reason}){space}. Make room (or use "
            "another --workdir) and rerun the same command; nothing already written was touched"
        )
    except modes.Preempted as e:
        print(str(e), file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM outside the loop (start-up, eval, sampling)
        signum = e.signum if isinstance(e, _Terminated) else signal.SIGINT
        print(
            f"interrupted ({signal.Signals(signum).name}): {FLAGS.mode} stopped; nothing partial "
            "was written, and the same command resumes from what was finished",
            file=sys.stderr,
        )
        sys.exit(128 + signum)
    except Exception as e:  # XLA's out-of-memory error (a JaxRuntimeError) or the host's
        message = _out_of_memory(e, cfg, FLAGS.mode)
        if message is None:
            raise
        fail(message)


class _Terminated(KeyboardInterrupt):
    """SIGTERM outside training's loop (which saves a preemption checkpoint instead)."""

    signum = signal.SIGTERM


def _terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # stopping already: a second one waits
    raise _Terminated()


# The batch that sets a mode's memory use.
_BATCH_FIELD = {
    "train": "training.batch_size",
    "train_classifier": "classifier.batch_size",
    "eval": "eval.batch_size",
    "sample": "sampling.batch_size",
}


def _out_of_memory(e: Exception, cfg, mode: str) -> str | None:
    """The one line for a device (XLA: RESOURCE_EXHAUSTED or 'Out of memory ...') or host
    (MemoryError) allocation that failed, naming the batch size; None for other errors."""
    import re

    import jax

    text = str(e)
    if isinstance(e, jax.errors.JaxRuntimeError):
        if "RESOURCE_EXHAUSTED" not in text and "out of memory" not in text.lower():
            return None
        found = re.search(r"(?i)out of memory[^\n]*", text)
        what = f"{jax.device_count()} {jax.default_backend()} device(s)"
        cause = found.group(0) if found else text.splitlines()[0]
    elif isinstance(e, MemoryError):
        what, cause = "the host", text or "MemoryError"
    else:
        return None
    field = _BATCH_FIELD.get(mode, "training.batch_size")
    section, name = field.split(".")
    batch = getattr(getattr(cfg, section), name)
    n = jax.device_count()
    smaller = max(n, batch // 2 // n * n)
    return (
        f"out of memory on {what} ({cause.strip().rstrip('.')}) with config.{field} = {batch} "
        f"({batch // n} per device); lower it, e.g. --config.{field}={smaller}, or run on "
        "devices with more memory"
    )


def _print_devices() -> None:
    """One line on process 0: the devices this run found (a CPU-only line says how to get the
    GPU build)."""
    import jax

    from score_sde import parallel

    if jax.process_index() == 0:
        top = parallel.topology()
        hint = "; for a GPU: pip install 'score_sde[cuda12]'" if top.platform == "cpu" else ""
        print(f"topology: {top.describe()}{hint}", flush=True)


EXPORT_WHAT = "write a run's EMA parameters and config as one .safetensors file"
EXPORT_USAGE = (
    "usage: score-sde export --workdir=DIR --out=FILE.safetensors [--step=N] [--overwrite]"
)
EXPORT_HELP = f"""{EXPORT_USAGE}

export: {EXPORT_WHAT}
(tensors named by parameter path, the config as JSON metadata), which
score_sde.load("FILE.safetensors") loads without the work directory; the parameters are the
checkpoint's bit for bit.

flags:
  --workdir=DIR     the run (trained, or converted with python -m score_sde.convert)
  --out=FILE        the file to write; must end in .safetensors and not exist
  --step=N          the checkpoint to export (default: the newest intact one)
  --overwrite       replace an existing --out

example:
  score-sde export --workdir=runs/digits --out=digits.safetensors

Exit status: 0 done; 2 bad input (one `error:` line)."""


def _is_export(args: list[str]) -> bool:
    """Whether the command line asks for export: `export` as the first word, or --mode=export."""
    pairs = zip(args, [*args[1:], ""], strict=True)
    return (args[:1] == ["export"]) or any(
        a == "--mode=export" or (a == "--mode" and b == "export") for a, b in pairs
    )


def _export(args: list[str]) -> None:
    """`score-sde export ...` (its own flags: absl's are global, and --out is taken elsewhere)."""
    import argparse

    if "--help" in args or "-h" in args:
        print(EXPORT_HELP)
        sys.exit(0)

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            fail(f"{message}; {EXPORT_USAGE}")

    parser = Parser(prog="score-sde export", add_help=False, allow_abbrev=False)
    parser.add_argument("--mode", choices=["export"])  # --mode=export instead of the word
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--step", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    a = parser.parse_args(args[1:] if args[:1] == ["export"] else args)
    logging.set_verbosity(logging.WARNING)  # orbax logs every file it touches at INFO
    from score_sde.convert import safetensors_export
    from score_sde.store import fs

    try:
        step = safetensors_export.export(a.workdir, a.out, a.step, overwrite=a.overwrite)
    except ValueError as e:
        fail(str(e))
    except OSError as e:  # --out on a full, read-only or missing disk
        if fs.storage_failure(e) is None:
            raise
        fail(f"cannot write --out {a.out} ({fs.storage_failure(e)}); nothing was written")
    print(
        f"exported {a.workdir} (step {step}: EMA parameters and config) -> {a.out}; load it "
        f"with score_sde.load({a.out!r})"
    )


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        fail(f"{e}; see {argv[0]} --helpfull")


def main(argv: list[str] | None = None) -> None:
    """Runs the command line `argv` (default sys.argv); exits with the status described above."""
    from score_sde.config import split_argv

    argv = sys.argv if argv is None else argv
    if _is_export(argv[1:]):
        return _export(argv[1:])
    if argv[1:2] == ["fields"]:  # every config field: type, default, meaning (no JAX)
        from score_sde.config import fields

        sys.exit(fields.main(argv[2:]))
    path, overrides, rest = split_argv(_mode_and_help(argv[1:]), DEFAULT_CONFIG)
    app.run(
        lambda args: _main(args, path, overrides),
        argv=[argv[0], *rest],
        flags_parser=_parse_flags,
    )


if __name__ == "__main__":
    main()
