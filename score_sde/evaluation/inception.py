"""InceptionV3 for FID/IS/KID, the variant of pytorch-fid (`FIDInceptionA/C/E` blocks, the
weights of TF's 2015-12-05 graph), in Flax NNX, NHWC.

    model = load_inception()                     # converted weights, see below
    out = model(images)                          # images [B, H, W, 3] in [0, 1]
    out["pool_3"]  # [B, 2048] FID/KID features;  out["logits"]  # [B, 1008] for IS

Preprocessing as pytorch-fid: bilinear resize to 299x299 (half-pixel centers, no antialias, as
`F.interpolate(mode='bilinear', align_corners=False)`), then x -> 2x - 1.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, converted once to an `.npz` (no
torch needed: score_sde.store.torch_format reads the file):

    python -m score_sde.evaluation.inception --fetch [--out PATH]    # download, check, convert
    python -m score_sde.evaluation.inception pt_inception-2015-12-05-6726825d.pth [--out PATH]

The second converts a copy downloaded by hand from WEIGHTS_URL (checked against the SHA-256 prefix
in its name). --out defaults to ~/.cache/score_sde/inception_fid.npz; `load_inception()` reads
`$SCORE_SDE_INCEPTION_WEIGHTS` or that path.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from score_sde.evaluation import weights
from score_sde.evaluation.weights import WEIGHTS_URL
from score_sde.store import fs

INPUT_SIZE = 299
NUM_CLASSES = 1008
FEATURE_DIM = 2048
DEFAULT_WEIGHTS = os.path.join("~", ".cache", "score_sde", "inception_fid.npz")
PROG = "python -m score_sde.evaluation.inception"


# --------------------------------------------------------------------------------------------
# Preprocessing and pooling


def resize_bilinear(x: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """[B, H, W, C] -> [B, size, size, C]; torch's bilinear, align_corners=False, no antialias."""
    b, _, _, c = x.shape
    return jax.image.resize(x, (b, size, size, c), "bilinear", antialias=False)


def preprocess(images: jax.Array) -> jax.Array:
    """pytorch-fid's input transform: images [B, H, W, 3] in [0, 1] -> 299x299 in [-1, 1]."""
    return 2.0 * resize_bilinear(images.astype(jnp.float32)) - 1.0


def _max_pool(x, window: int, stride: int, pad: int = 0):
    padding = ((0, 0), (pad, pad), (pad, pad), (0, 0))
    return jax.lax.reduce_window(
        x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), padding
    )


def _avg_pool_3x3(x):
    """3x3 stride 1 pad 1 average pool with count_include_pad=False (the FID blocks)."""
    padding = ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), padding)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), padding)
    return total / count


# --------------------------------------------------------------------------------------------
# Blocks (attribute names mirror torchvision / pytorch-fid so weights map one to one)


class BasicConv2d(nnx.Module):
    """Conv (no bias) -> BatchNorm (eps 1e-3, running statistics) -> ReLU."""

    def __init__(self, cin, cout, kernel, *, rngs, stride=1, padding=0):
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (padding, padding) if isinstance(padding, int) else padding
        self.conv = nnx.Conv(
            cin,
            cout,
            kernel,
            strides=stride,
            padding=((padding[0], padding[0]), (padding[1], padding[1])),
            use_bias=False,
            rngs=rngs,
        )
        self.bn = nnx.BatchNorm(cout, use_running_average=True, epsilon=1e-3, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


class FIDInceptionA(nnx.Module):
    def __init__(self, cin, pool_features, *, rngs):
        self.branch1x1 = BasicConv2d(cin, 64, 1, rngs=rngs)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1, rngs=rngs)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, rngs=rngs)
        self.branch_pool = BasicConv2d(cin, pool_features, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
    def __init__(self, cin, *, rngs):
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2, rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return jnp.concatenate([b3, bd, _max_pool(x, 3, 2)], axis=-1)


class FIDInceptionC(nnx.Module):
    def __init__(self, cin, c7, *, rngs):
        self.branch1x1 = BasicConv2d(cin, 192, 1, rngs=rngs)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1, rngs=rngs)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1, rngs=rngs)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch_pool = BasicConv2d(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4):
            bd = layer(bd)
        bd = self.branch7x7dbl_5(bd)
        bp = self.branch_pool(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
    def __init__(self, cin, *, rngs):
        self.branch3x3_1 = BasicConv2d(cin, 192, 1, rngs=rngs)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, rngs=rngs)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1, rngs=rngs)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), rngs=rngs)
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), rngs=rngs)
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, rngs=rngs)

    def __call__(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return jnp.concatenate([b3, b7, _max_pool(x, 3, 2)], axis=-1)


class FIDInceptionE(nnx.Module):
    """`max_pool=False`: FIDInceptionE_1 (avg pool, count_include_pad=False);
    `max_pool=True`: FIDInceptionE_2 (the TF graph's bug: max pool in the last block)."""

    def __init__(self, cin, *, max_pool: bool, rngs):
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1, rngs=rngs)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1, rngs=rngs)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1, rngs=rngs)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, rngs=rngs)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), rngs=rngs)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), rngs=rngs)
        self.branch_pool = BasicConv2d(cin, 192, 1, rngs=rngs)

    def __call__(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
        pooled = _max_pool(x, 3, 1, pad=1) if self.max_pool else _avg_pool_3x3(x)
        bp = self.branch_pool(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nnx.Module):
    """pytorch-fid's FID InceptionV3: images [B, H, W, 3] in [0, 1] ->
    {"pool_3": [B, 2048], "logits": [B, 1008]}."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2, rngs=rngs)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3, rngs=rngs)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1, rngs=rngs)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1, rngs=rngs)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3, rngs=rngs)
        self.Mixed_5b = FIDInceptionA(192, 32, rngs=rngs)
        self.Mixed_5c = FIDInceptionA(256, 64, rngs=rngs)
        self.Mixed_5d = FIDInceptionA(288, 64, rngs=rngs)
        self.Mixed_6a = InceptionB(288, rngs=rngs)
        self.Mixed_6b = FIDInceptionC(768, 128, rngs=rngs)
        self.Mixed_6c = FIDInceptionC(768, 160, rngs=rngs)
        self.Mixed_6d = FIDInceptionC(768, 160, rngs=rngs)
        self.Mixed_6e = FIDInceptionC(768, 192, rngs=rngs)
        self.Mixed_7a = InceptionD(768, rngs=rngs)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False, rngs=rngs)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True, rngs=rngs)
        self.fc = nnx.Linear(FEATURE_DIM, NUM_CLASSES, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        """Preprocessed x [B, 299, 299, 3] in [-1, 1] -> pool_3 [B, 2048]."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = _max_pool(x, 3, 2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = _max_pool(x, 3, 2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return x.mean(axis=(1, 2))

    def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3] in [0, 1], got shape {images.shape}")
        pool = self.features(preprocess(images))
        return {"pool_3": pool, "logits": self.fc(pool)}


# --------------------------------------------------------------------------------------------
# Weights: torch state dict <-> flat {"a/b/kernel": array}


_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


def torch_state_dict_to_flat(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """pytorch-fid FIDInceptionV3 state dict (numpy) -> {"Mixed_5b/branch1x1/conv/kernel": ...}."""
    out = {}
    for key, value in state_dict.items():
        parts = str(key).split(".")
        if parts[0] == "AuxLogits" or parts[-1] == "num_batches_tracked":
            continue
        value = np.asarray(value)
        if parts[0] == "fc" and len(parts) == 2 and parts[1] in ("weight", "bias"):
            out[f"fc/{'kernel' if parts[1] == 'weight' else 'bias'}"] = (
                value.T if parts[1] == "weight" else value
            )
        elif len(parts) > 2 and parts[-2:] == ["conv", "weight"] and value.ndim == 4:
            out["/".join(parts[:-1] + ["kernel"])] = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif len(parts) > 2 and parts[-2] == "bn" and parts[-1] in _BN_NAMES:
            out["/".join(parts[:-1] + [_BN_NAMES[parts[-1]]])] = value
        else:
            raise ValueError(f"unexpected key {key!r} in the Inception state dict")
        if value.dtype == object:
            raise ValueError(f"{key!r} is a {type(state_dict[key]).__name__}, not a tensor")
    return {k: v.astype(np.float32) for k, v in out.items()}


def _pure_to_flat(tree, prefix=()) -> dict[str, np.ndarray]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_pure_to_flat(v, (*prefix, str(k))))
        else:
            out["/".join((*prefix, str(k)))] = v
    return out


def _flat_to_pure(flat: Mapping[str, np.ndarray]) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def model_to_flat(model: InceptionV3) -> dict[str, np.ndarray]:
    """All weights and BN statistics as a flat {"path/name": array} dict."""
    return {k: np.asarray(v) for k, v in _pure_to_flat(nnx.to_pure_dict(nnx.state(model))).items()}


def model_from_flat(flat: Mapping[str, np.ndarray]) -> InceptionV3:
    """InceptionV3 with weights from a flat dict (every entry must match the model's shapes)."""
    model = nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))
    state = nnx.state(model)
    expected = _pure_to_flat(nnx.to_pure_dict(state))
    missing = sorted(set(expected) - set(flat))
    extra = sorted(set(flat) - set(expected))
    if missing or extra:
        raise ValueError(
            f"Inception weights do not match the model: missing {missing[:5]} "
            f"({len(missing)}), unexpected {extra[:5]} ({len(extra)})"
        )
    for k, v in expected.items():
        if tuple(np.shape(flat[k])) != tuple(v.shape):
            raise ValueError(
                f"Inception weight {k!r}: shape {np.shape(flat[k])}, expected {v.shape}"
            )
    pure = _flat_to_pure({k: jnp.asarray(flat[k], jnp.float32) for k in expected})
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)
    return model


def random_flat_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights with sane activation scales (He-normal kernels, BN near identity), for
    tests and benchmarks that must run without the real weights."""
    model = nnx.eval_shape(lambda: InceptionV3(rngs=nnx.Rngs(0)))
    shapes = _pure_to_flat(nnx.to_pure_dict(nnx.state(model)))
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in shapes.items():
        name = k.rsplit("/", 1)[-1]
        if name == "kernel":
            fan_in = int(np.prod(v.shape[:-1]))
            value = rng.standard_normal(v.shape) * np.sqrt(2.0 / fan_in)
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, v.shape)
        else:  # bias, mean
            value = rng.uniform(-0.2, 0.2, v.shape)
        out[k] = value.astype(np.float32)
    return out


def weights_path(path: str | os.PathLike | None = None) -> str:
    """`path`, else $SCORE_SDE_INCEPTION_WEIGHTS, else ~/.cache/score_sde/inception_fid.npz."""
    path = path or os.environ.get("SCORE_SDE_INCEPTION_WEIGHTS") or DEFAULT_WEIGHTS
    return os.path.expanduser(str(path))


def load_inception(path: str | os.PathLike | None = None) -> InceptionV3:
    """The FID InceptionV3 with converted pytorch-fid weights (see the module docstring)."""
    path = weights_path(path)
    if not fs.path(path).is_file():
        raise ValueError(
            f"Inception weights not found at {path!r}: get them once with `{PROG} --fetch "
            f"--out {path}` (downloads {WEIGHTS_URL}, no torch needed), or convert a copy "
            f"downloaded by hand with `{PROG} {weights.PTH_NAME} --out {path}`, or set "
            "$SCORE_SDE_INCEPTION_WEIGHTS"
        )
    return model_from_flat(fs.load_npz(path))


# --------------------------------------------------------------------------------------------
# The command: python -m score_sde.evaluation.inception (--fetch | PTH) [--out PATH]


def _to_npz(pth_path: str, out_path: str | os.PathLike) -> str:
    from score_sde.store import torch_format

    try:
        state_dict = torch_format.load(pth_path)
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"a {type(state_dict).__name__}, not a state dict")
        flat = torch_state_dict_to_flat(state_dict)
        model_from_flat(flat)  # validates names and shapes
    except ValueError as e:
        reason = str(e).replace(f"{pth_path}: ", "").replace(pth_path, "the file")
        raise ValueError(
            f"{pth_path} is not pytorch-fid's Inception ({reason}): download {WEIGHTS_URL} "
            f"(or run `{PROG} --fetch --out {out_path}`)"
        ) from None
    fs.save_npz(out_path, **flat)
    return str(fs.path(out_path))


def convert(pth_path: str | os.PathLike, out_path: str | os.PathLike = DEFAULT_WEIGHTS) -> str:
    """pytorch-fid's `.pth` -> our `.npz`, read without torch (score_sde.store.torch_format);
    returns the path written. Raises ValueError naming the file when it is missing, does not have
    the SHA-256 prefix its name carries, or is not pytorch-fid's Inception."""
    pth, out = os.fspath(pth_path), str(fs.path(out_path))
    if not os.path.isfile(pth):
        raise ValueError(
            f"{pth} not found: download {WEIGHTS_URL} and run `{PROG} {weights.PTH_NAME} --out "
            f"{out}` in its folder, or let `{PROG} --fetch --out {out}` do both"
        )
    expected = weights.digest_in_name(pth)
    if expected:
        try:
            weights.check_digest(pth, expected)
        except ValueError as e:
            raise ValueError(
                f"{e} (the prefix in its name): a damaged or different file; download "
                f"{WEIGHTS_URL} again, or run `{PROG} --fetch --out {out}`"
            ) from None
    return _to_npz(pth, out)


def fetch(out_path: str | os.PathLike = DEFAULT_WEIGHTS, *, timeout: float = 60.0) -> str:
    """Downloads weights.WEIGHTS_URL, checks its SHA-256 prefix, converts it to `out_path` and
    returns the path written (the `.pth` is not kept). Raises ConnectionError saying what to
    download by hand when the server is unreachable, ValueError for a wrong download."""
    out = str(fs.path(out_path))
    with tempfile.TemporaryDirectory(prefix="score_sde_inception_") as tmp:
        pth = os.path.join(tmp, weights.PTH_NAME)
        try:
            weights.download(pth, timeout=timeout)
        except OSError as e:
            reason = " ".join(str(getattr(e, "reason", None) or e).split()) or type(e).__name__
            raise ConnectionError(
                f"cannot download {weights.WEIGHTS_URL} ({reason}): download that file on a "
                f"machine with internet access, copy it to this one and run `{PROG} "
                f"{weights.PTH_NAME} --out {out}` in its folder"
            ) from None
        return _to_npz(pth, out)


def main(argv=None) -> None:
    """The command line; a bad file or no network: one `error:` line, exit status 2."""
    from score_sde.config import fail

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Get pytorch-fid's Inception weights as the .npz that FID/IS/KID read: "
        "--fetch downloads, checks and converts them; PTH converts a copy downloaded by hand.",
    )
    parser.add_argument("pth", nargs="?", help=f"a downloaded {weights.PTH_NAME} ({WEIGHTS_URL})")
    parser.add_argument(
        "--fetch", action="store_true", help="download the .pth, check its SHA-256, convert it"
    )
    parser.add_argument(
        "--out", default=DEFAULT_WEIGHTS, help="the .npz to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if bool(args.pth) == args.fetch:
        fail(
            f"give either --fetch (download {WEIGHTS_URL}) or the path of a downloaded "
            f"{weights.PTH_NAME}, not {'both' if args.fetch else 'neither'}"
        )
    try:
        written = fetch(args.out) if args.fetch else convert(args.pth, args.out)
    except (ValueError, OSError) as e:
        fail(e)
    print(f"wrote {written}")


if __name__ == "__main__":
    main()
