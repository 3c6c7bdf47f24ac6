"""score_sde.store.torch_format reads PyTorch files without torch: both of torch's formats (zip and
legacy), every dtype a state dict holds, non-contiguous tensors, views into shared storages with
offsets, nested dicts and lists; it refuses anything that is not plain state-dict data.

The fixtures in tests/assets were written by PyTorch itself (see tests/assets/README.md); the expected
arrays are what torch gives for the same tensors.
"""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from score_sde.store import torch_format
from tests.helpers import ASSETS

DATA = str(ASSETS)


@pytest.mark.parametrize("name", ["torch_zip.pth", "torch_legacy.pth"])
def test_reads_what_torch_wrote(name):
    obj = torch_format.load(os.path.join(DATA, name))
    with np.load(os.path.join(DATA, "torch_expected.npz")) as f:
        expected = {k: f[k] for k in f.files}
    assert obj["step"] == 9 and obj["ema"]["decay"] == 0.999 and obj["ema"]["num_updates"] == 3
    got = {f"model/{k}": v for k, v in obj["model"].items()}
    got |= {f"ema/shadow_params/{i}": v for i, v in enumerate(obj["ema"]["shadow_params"])}
    assert sorted(got) == sorted(expected)
    dtypes = {"conv.weight": "float32", "bn.running_mean": "float64", "half": "float16",
              "bf16": "bfloat16", "bn.num_batches_tracked": "int64", "flags": "bool"}  # fmt: skip
    for k, v in expected.items():
        np.testing.assert_array_equal(np.asarray(got[k], v.dtype), v, err_msg=k)
        assert got[k].shape == v.shape, k
    for k, dtype in dtypes.items():
        assert got[f"model/{k}"].dtype.name == dtype, k
    assert list(obj["model"])[:3] == ["conv.weight", "conv.bias", "bn.running_mean"]  # as saved
    np.testing.assert_array_equal(got["model/shared_b"], got["model/shared_a"].reshape(2, 2))


def _zip_with(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
    return buf.getvalue()


def test_reads_an_argparse_namespace(tmp_path):
    """DiT's and SiT's train.py save their argparse args beside the weights."""
    import argparse

    args = argparse.Namespace(model="DiT-XL/2", global_batch_size=256)
    path = tmp_path / "0400000.pt"
    path.write_bytes(_zip_with(pickle.dumps({"args": args, "step": 3}, protocol=2)))
    assert torch_format.load(path) == {"args": args, "step": 3}


def test_the_tests_pth_writer_round_trips(tmp_path):
    """tests.helpers.write_pth (torch's zip layout, for synthetic checkpoints) reads back."""
    import collections

    from tests.helpers import write_pth

    rng = np.random.default_rng(0)
    sd = collections.OrderedDict(
        w=rng.standard_normal((3, 4)).astype(np.float32).T,  # non-contiguous: written in C order
        scalar=np.array(2.5),
        empty=np.zeros((0, 3), np.float16),
        n=np.arange(5),
        flags=np.array([True, False]),
    )
    write_pth(tmp_path / "x.pth", {"model": sd, "step": 2**40, "lr": [1e-4, None, ("a", -1)]})
    back = torch_format.load(tmp_path / "x.pth")
    assert back["step"] == 2**40 and back["lr"] == [1e-4, None, ("a", -1)]
    assert list(back["model"]) == list(sd)
    for k, v in sd.items():
        assert back["model"][k].dtype == v.dtype and back["model"][k].shape == v.shape, k
        np.testing.assert_array_equal(back["model"][k], v)


def test_refuses_code_and_junk(tmp_path):
    evil = tmp_path / "evil.pth"

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil.write_bytes(_zip_with(pickle.dumps({"w": Boom()}, protocol=2)))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        torch_format.load(evil)
    with pytest.raises(ValueError, match="is not a file"):
        torch_format.load(tmp_path)


def _junk_inputs():
    """(name, bytes) of inputs that are not PyTorch files, all fixed: 500 seeded random blobs
    (some behind a legacy file's magic number, so they reach the unpickler), every 7th prefix of
    both real files, and the real files with seeded bytes flipped."""
    rng = np.random.default_rng(0)
    magic = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    for i in range(500):
        blob = rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        yield f"random {i}", (magic + blob if i % 2 else blob)
    for name in ("torch_legacy.pth", "torch_zip.pth"):
        real = open(os.path.join(DATA, name), "rb").read()
        for n in range(0, len(real) - 1, 7):
            yield f"{name}[:{n}]", real[:n]
        for i in range(50):
            flipped = bytearray(real)
            for at in rng.integers(0, len(real), 4):
                flipped[at] ^= int(rng.integers(1, 256))
            yield f"{name} flipped {i}", bytes(flipped)


def test_every_junk_input_gets_the_one_clear_message(tmp_path):
    """Whatever the bytes, load() raises one ValueError naming the file, or returns data (a byte
    flip inside a tensor leaves a readable file); never another exception type."""
    path = tmp_path / "junk.pth"
    outcomes = {"refused": 0, "read": 0}
    for name, data in _junk_inputs():
        path.write_bytes(data)
        try:
            torch_format.load(path)
            outcomes["read"] += 1
        except ValueError as e:
            message = str(e)
            assert str(path) in message and "\n" not in message, (name, message)
            outcomes["refused"] += 1
        except Exception as e:  # anything else is the bug this test is for
            raise AssertionError(f"{name}: {type(e).__name__}: {e}") from e
    assert outcomes["refused"] > 600, outcomes
    for data in (b"", os.urandom(0)):
        path.write_bytes(data)
        with pytest.raises(ValueError, match="not a readable PyTorch file"):
            torch_format.load(path)
