"""What several test modules share: the repository's paths, the tiny toy configs, file-system
snapshots, the one-clear-line assertions, and small builders of data in real formats.

Plain functions and constants only; shared fixtures live in tests/conftest.py, and no test module
imports another test module.
"""

import hashlib
import io
import math
import os
import pathlib
import pickle
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
from typing import NamedTuple

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]  # the repository (pathlib)
REPO = str(ROOT)  # the same, as a string
ASSETS = ROOT / "tests" / "assets"  # binary fixtures (tests/assets/README.md)
GMM = os.path.join(REPO, "configs", "toy", "gmm.py")

# ---------------------------------------------------------------------------- the tiny toy runs

# The tiny checkpointed run: 24 steps, 2 per dispatch, snapshots at 10, 20, 24, preemption
# checkpoints every 4 steps, on 4 (faked) devices (newest first: 24, 20, 16 (preemption), 10).
OVERRIDES = {
    "training.n_iters": 24,
    "training.n_jitted_steps": 2,
    "training.batch_size": 16,
    "training.snapshot_freq": 10,
    "training.snapshot_freq_for_preemption": 4,
    "training.log_freq": 1000,
    "training.eval_freq": 1000,
    "training.snapshot_sampling": False,
    "training.eval_after_training": False,
    "model.nf": 16,
    "model.num_layers": 1,
}

# configs/toy/gmm.py shrunk, by what the test needs ("section.field": value).
TINY = {
    # a few seconds: 2 steps, no pictures (launcher and bad-input tests)
    "launch": {
        "model.nf": 16,
        "model.num_layers": 1,
        "model.num_scales": 20,
        "training.batch_size": 16,
        "training.n_iters": 2,
        "training.n_jitted_steps": 2,
        "training.snapshot_sampling": False,
        "training.eval_after_training": False,
        "eval.num_samples": 16,
        "sampling.batch_size": 16,
        "sampling.num_samples": 16,
    },
    # the three modes end to end: 8 steps with logs, eval loss, snapshots and EMA pictures
    "modes": {
        "model.nf": 16,
        "model.num_layers": 1,
        "model.num_scales": 20,
        "training.batch_size": 16,
        "training.n_iters": 8,
        "training.n_jitted_steps": 2,
        "training.log_freq": 2,
        "training.eval_freq": 4,
        "training.snapshot_freq": 8,
        "training.snapshot_freq_for_preemption": 4,
        "training.eval_after_training": False,
        "sampling.batch_size": 64,
        "sampling.num_samples": 64,
        "eval.num_samples": 64,
        "eval.batch_size": 32,
        "eval.num_bpd_examples": 64,
        "eval.rtol": 1e-3,
        "eval.atol": 1e-3,
    },
    # the train step: 8 steps, 4 of warmup
    "train": {
        "model.nf": 16,
        "model.num_layers": 1,
        "training.batch_size": 16,
        "training.n_iters": 8,
        "training.n_jitted_steps": 2,
        "training.snapshot_sampling": False,
        "training.eval_after_training": False,
        "optim.warmup": 4,
    },
    # the tiny checkpointed run (OVERRIDES)
    "checkpoint": OVERRIDES,
}


def tiny_config(preset: str = "launch", **fields):
    """configs/toy/gmm.py shrunk by TINY[preset], then `fields` like {"training.n_iters": 2}."""
    from configs.toy import gmm

    c = gmm.get_config()
    for k, v in {**TINY[preset], **fields}.items():
        section, name = k.split(".")
        try:
            c[section][name] = v
        except TypeError:  # a config file that sets another type than the base
            del c[section][name]
            c[section][name] = v
    return c


def tiny_flags(**more) -> list[str]:
    """The command-line flags of the tiny checkpointed run (OVERRIDES), then `more`."""
    return [f"--config.{k}={v}" for k, v in {**OVERRIDES, **more}.items()]


def train_until_signal(workdir, signal_name, at_step, timeout=240):
    """Runs the tiny checkpointed run in a child that sends itself `signal_name` when it fetches
    batch `at_step`."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        from configs.toy import gmm
        from score_sde.data import datasets
        from score_sde.run import modes
        from score_sde.config import from_config

        config = gmm.get_config()
        for k, v in {OVERRIDES!r}.items():
            a, b = k.split(".")
            config[a][b] = v
        cfg = from_config(config)

        class Signalling:
            def __init__(self):
                self.inner = datasets.get_process_dataset(
                    cfg.data, "train", global_batch=cfg.training.batch_size, seed=cfg.seed)
            def batch(self, step):
                if step == {at_step}:
                    os.kill(os.getpid(), signal.{signal_name})
                return self.inner.batch(step)

        try:
            modes.run("train", cfg, {str(workdir)!r}, dataset=Signalling())
        except modes.Preempted as e:
            print("preempted:", e)
            sys.exit(143)
        print("clean exit")
    """)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


# ---------------------------------------------------------------------------- what a run leaves

# A plain progress line (store/progress.py) as a log gets it: the rate line after an update, the
# line at the start, the keep-alive line while an update is awaited; a postfix may follow.
RATE_LINE = re.compile(
    r"^[^\n]+: \d+(/\d+)? \S+ \([0-9.e+-]+ \S+/s(, ETA [0-9:?]+)?\)(, \S+ [0-9.e+-]+)*$"
)
PROGRESS_LINE = re.compile(
    r"^[^\n]+: \d+(/\d+)? \S+"
    r"( \([0-9.e+-]+ \S+/s(, ETA [0-9:?]+)?\)|, starting|, still working \(\d+ s since the last line\))"
    r"(, \S+ [0-9.e+-]+)*$"
)

# Besides the one line per problem, none of orbax's noise may reach the terminal.
NOISE = (
    "Traceback",
    "Future exception",
    "Event loop is closed",
    "Exception ignored",
    "never awaited",
    "RuntimeWarning",
)


def snapshot(workdir) -> dict[str, str]:
    """{relative path: sha1} of every file under `workdir`."""
    out = {}
    for root, _, files in os.walk(workdir):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, workdir)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def assert_kept(before: dict[str, str], workdir) -> None:
    after = snapshot(workdir)
    lost = {k for k, v in before.items() if after.get(k) != v}
    assert not lost, f"lost or changed in the work directory: {sorted(lost)}"


def dir_listing(workdir) -> dict[str, str]:
    """{relative path: sha1} of every file and {relative path/: 'dir'} of every directory."""
    out = {}
    for root, dirs, files in os.walk(workdir):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), workdir) + "/"] = "dir"
        for f in files:
            path = os.path.join(root, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, workdir)] = hashlib.sha1(fh.read()).hexdigest()
    return out


def file_tree(root: pathlib.Path) -> dict[str, str]:
    """{relative path: sha1, 'dir' or 'link -> target'} of everything under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = f"link -> {os.readlink(path)}"
        else:
            out[rel] = "dir" if path.is_dir() else hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def assert_one_clear_line(message: str, *needles: str) -> None:
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message
    for n in needles:
        assert n in message, f"{n!r} not in {message!r}"


def assert_refused(proc, needles: list[str], before: dict, after: dict) -> None:
    """Exit status 2, no traceback, one `error:` line holding every needle, and the file system
    (`file_tree` before and after) unchanged."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert after == before, "the command changed the file system"


def assert_trees_equal(a, b):
    """Two pytrees with the same leaves, bit for bit."""
    import jax

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb, strict=True):
        np.testing.assert_array_equal(u, v)


def restore_host(workdir, like, step=None):
    """(host state, the step used, the warning lines) of a fresh read-only Checkpoints."""
    from score_sde import parallel
    from score_sde.store import checkpoint

    lines = []
    with checkpoint.Checkpoints(str(workdir), read_only=True, warn=lines.append) as ckpts:
        state = ckpts.restore(like, step)
        used = ckpts.last_restored_step
    return parallel.to_host(state), used, lines


class StepState(NamedTuple):  # records its step, like a TrainState
    w: object
    step: object


def step_state(step: int) -> StepState:
    """A tiny replicated state holding `step`: w = full((2, 3), step)."""
    import jax
    import jax.numpy as jnp

    from score_sde import parallel

    rep = parallel.replicated(parallel.make_mesh())
    return StepState(
        jax.device_put(jnp.full((2, 3), float(step)), rep), jax.device_put(jnp.int32(step), rep)
    )


def data_files(step_dir) -> list[str]:
    """The array data files of a checkpoint (orbax's OCDBT data under <item>/.../d/), largest
    first."""
    found = []
    for root, _, files in os.walk(step_dir):
        if os.path.basename(root) == "d":
            found += [os.path.join(root, f) for f in files]
    assert found, f"no data files under {step_dir}"
    return sorted(found, key=os.path.getsize, reverse=True)


def truncate_file(step_dir):
    """The largest data file of a checkpoint cut to a third."""
    path = data_files(step_dir)[0]
    os.truncate(path, os.path.getsize(path) // 3)


# ---------------------------------------------------------------------------- a full disk

FULL_DISK_FLAGS = tiny_flags(**{"training.n_iters": 40})


def launch_tiny_run(workdir, *more):
    """launch.py on configs/toy/gmm.py with FULL_DISK_FLAGS (40 steps of the tiny run)."""
    return subprocess.run(
        [sys.executable, "launch.py", "--config=configs/toy/gmm.py", f"--workdir={workdir}",
         *FULL_DISK_FLAGS, *more],
        cwd=REPO, capture_output=True, text=True, timeout=240,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip


def launch_two_steps(config: str, workdir) -> subprocess.CompletedProcess:
    """launch.py training `config` (a path under configs/) for 2 steps, one per dispatch, without
    snapshot samples; the finished process (output captured)."""
    return subprocess.run(
        [sys.executable, "launch.py", "--config", config, f"--workdir={workdir}",
         "--config.training.n_iters=2", "--config.training.snapshot_sampling=False",
         "--config.training.n_jitted_steps=1", "--config.training.log_freq=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def one_error_line(proc) -> str:
    """Exit status 2, no traceback or noise, one `error:` line besides the progress lines."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    for noise in NOISE:
        assert noise not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not PROGRESS_LINE.match(ln)]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def fill_disk(disk, keep: int = 12 * 1024):
    """Writes a filler file until the disk is full, then gives back `keep` bytes (room for the
    work directory's write probe, not for the samples' files)."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    os.truncate(disk / "filler", max(os.path.getsize(disk / "filler") - keep, 0))


# ---------------------------------------------------------------------------- processes


def popen_as_a_script_starts_it(argv, **kw) -> subprocess.Popen:
    """Popen with SIGINT ignored on entry, as `cmd &` in a script starts it (a background job of a
    non-interactive shell): launch.py must still stop on Ctrl-C / `kill -INT`."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.Popen(argv, **kw)
    finally:
        signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------- data and evaluation


def prepare(*args):
    """`python -m score_sde.data.prepare ARGS`: (exit status, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "score_sde.data.prepare", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


def cifar_archive(path, per_batch=3, n_test=4, seed=0):
    """A cifar-10-python.tar.gz in the real layout; returns the (images, labels) it holds."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        rows = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # R plane, G plane, B plane
        batches[name] = (images, labels, {b"batch_label": name.encode(), b"labels": labels,
                                          b"data": rows, b"filenames": [b"x.png"] * n})  # fmt: skip
    with tarfile.open(path, "w:gz") as tar:
        for name, (_, _, content) in [*batches.items(), ("batches.meta", (None, None, {}))]:
            data = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return (
        np.concatenate([b[0] for b in train]),
        np.concatenate([b[1] for b in train]),
        batches["test_batch"][0],
        np.asarray(batches["test_batch"][1]),
    )


def npz_config(tmp_path, n=13):
    """A DataConfig of `n` constant 4x4 RGB images in an .npz (image i is constant i / 255)."""
    from score_sde.config import DataConfig

    x = np.zeros((n, 4, 4, 3), np.uint8)
    x[:] = np.arange(n)[:, None, None, None]  # image i is constant i / 255
    np.savez(tmp_path / "d.npz", x_train=x)
    return DataConfig(
        dataset="npz",
        path=str(tmp_path / "d.npz"),
        image_size=4,
        num_channels=3,
        centered=True,
        random_flip=True,
        uniform_dequantization=True,
    )


def fake_inception(images):
    """Features that identify the image: pool_3 = its mean pixel (x 255) in 2 columns."""
    m = images.mean(axis=(1, 2, 3)) * 255.0
    return {"pool_3": np.stack([m, m**2], 1), "logits": np.stack([m, -m], 1)}


def digits_config(weights, stats):
    """configs/vp/ddpm/cifar10.py shrunk to a tiny DDPM on 8x8 digits."""
    from configs.vp.ddpm import cifar10

    c = cifar10.get_config()
    c.data.dataset, c.data.image_size, c.data.num_channels = "digits", 8, 1
    c.data.random_flip = False
    m = c.model
    m.nf, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.num_scales = 32, (1,), 1, (), 50
    m.dropout = 0.0
    t = c.training
    t.batch_size, t.n_iters, t.snapshot_sampling = 16, 2, False
    c.sampling.batch_size = 8
    e = c.eval
    e.begin_ckpt, e.batch_size = -1, 300  # the 297 test digits in one padded batch
    e.enable_sampling, e.num_samples = True, 12  # two sampler calls, the second trimmed
    e.enable_bpd, e.num_repeats, e.rtol, e.atol = True, 2, 1e-2, 1e-2
    e.inception_weights, e.fid_stats = str(weights), str(stats)
    return c


def interrupted_config(weights, stats):
    """digits_config as the interruption tests run it: 2 bits/dim rounds (16 test digits, 2
    draws), then 5 sampling rounds of 8."""
    c = digits_config(weights, stats)
    c.eval.num_samples, c.eval.num_bpd_examples, c.eval.batch_size = 40, 16, 16
    return c


def digits_classifier():
    """A logistic regression fit on the first 1500 digits (test accuracy 0.91)."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    d = load_digits()
    x = d.data / 16.0  # the config's [0, 1] scaling at 8x8
    return LogisticRegression(max_iter=2000).fit(x[:1500], d.target[:1500])


def digits_confidence(clf, samples) -> float:
    """Mean max-probability of samples in model space [-1, 1] (centered data)."""
    x = np.clip((np.asarray(samples).reshape(len(samples), 64) + 1.0) / 2.0, 0.0, 1.0)
    return float(clf.predict_proba(x).max(axis=1).mean())


# ---------------------------------------------------------------------------- the SDEs


def simulate_forward(sde, key, x0, t_end, steps=1000):
    """Euler-Maruyama simulation of the forward SDE from 0 to t_end for particles x0 [n, D]."""
    import jax
    import jax.numpy as jnp

    dt = t_end / steps

    def body(i, carry):
        x, key = carry
        key, sub = jax.random.split(key)
        t = jnp.full((x.shape[0],), i * dt)
        drift, g = sde.sde(x, t)
        return x + drift * dt + g[:, None] * math.sqrt(dt) * jax.random.normal(sub, x.shape), key

    return jax.lax.fori_loop(0, steps, body, (x0, key))[0]


# ---------------------------------------------------------------------------- PyTorch files

_TORCH_STORAGES = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}


def write_pth(path, obj) -> None:
    """`torch.save(obj, path)` without torch, in torch's zip format: archive/data.pkl, a protocol-2
    pickle in which each numpy array is `torch._utils._rebuild_tensor_v2(storage, 0, size,
    stride, False, OrderedDict())` over a persistent storage ('storage', torch.<T>Storage, key,
    'cpu', numel) kept at archive/data/<key>, beside archive/version. obj: dicts (OrderedDicts
    stay ordered), argparse.Namespaces, lists, tuples, str, int, float, bool, None and arrays of
    the dtypes above."""
    import argparse
    import collections
    import struct
    import zipfile

    storages: list[bytes] = []

    def text(s: str) -> bytes:
        raw = s.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    def integer(v: int) -> bytes:
        if -(2**31) <= v < 2**31:
            return b"J" + struct.pack("<i", v)
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw

    def ints(values) -> bytes:
        return b"(" + b"".join(integer(int(v)) for v in values) + b"t"

    def ordered_dict() -> bytes:
        return b"ccollections\nOrderedDict\n)R"

    def tensor(a: np.ndarray) -> bytes:
        a = np.array(a, order="C", copy=None)  # (ascontiguousarray makes a scalar 1-D)
        key = str(len(storages))
        storages.append(a.tobytes())
        kind = _TORCH_STORAGES[a.dtype.name]
        pid = b"(" + text("storage") + f"ctorch\n{kind}\n".encode() + text(key) + text("cpu")
        pid += integer(a.size) + b"tQ"
        strides = [s // a.itemsize for s in a.strides] if a.size else [1] * a.ndim
        args = pid + integer(0) + ints(a.shape) + ints(strides) + b"\x89" + ordered_dict()
        return b"ctorch._utils\n_rebuild_tensor_v2\n(" + args + b"tR"

    def dump(x) -> bytes:
        if isinstance(x, np.ndarray):
            return tensor(x)
        if isinstance(x, argparse.Namespace):  # cls.__new__(cls), then its __dict__ (BUILD)
            return b"cargparse\nNamespace\n)\x81" + dump(vars(x)) + b"b"
        if isinstance(x, dict):
            start = ordered_dict() if isinstance(x, collections.OrderedDict) else b"}"
            items = b"".join(dump(k) + dump(v) for k, v in x.items())
            return start + (b"(" + items + b"u" if x else b"")
        if isinstance(x, list):
            return b"]" + (b"(" + b"".join(map(dump, x)) + b"e" if x else b"")
        if isinstance(x, tuple):
            return b"(" + b"".join(map(dump, x)) + b"t"
        if isinstance(x, bool):
            return b"\x88" if x else b"\x89"
        if isinstance(x, int):
            return integer(x)
        if isinstance(x, float):
            return b"G" + struct.pack(">d", x)
        if isinstance(x, str):
            return text(x)
        if x is None:
            return b"N"
        raise TypeError(f"write_pth: cannot write a {type(x).__name__}")

    pickled = b"\x80\x02" + dump(obj) + b"."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/byteorder", "little")
        for i, raw in enumerate(storages):
            z.writestr(f"archive/data/{i}", raw)
        z.writestr("archive/version", "3\n")
