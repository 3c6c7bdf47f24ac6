"""score_sde.store.torch_format reads PyTorch files without torch: both of torch's formats (zip and
legacy), every dtype a state dict holds, non-contiguous tensors, views into shared storages with
offsets, nested dicts and lists; it refuses anything that is not plain state-dict data.

The fixtures in tests/data were written by PyTorch itself (see tests/data/README.md); the expected
arrays are what torch gives for the same tensors.
"""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from score_sde.store import torch_format

DATA = os.path.join(os.path.dirname(__file__), "data")


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


def test_refuses_code_and_junk(tmp_path):
    evil = tmp_path / "evil.pth"

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil.write_bytes(_zip_with(pickle.dumps({"w": Boom()}, protocol=2)))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        torch_format.load(evil)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(200))
    with pytest.raises(ValueError, match="not a readable PyTorch file|neither a zip"):
        torch_format.load(junk)
    with pytest.raises(ValueError, match="is not a file"):
        torch_format.load(tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(open(os.path.join(DATA, "torch_legacy.pth"), "rb").read()[:-100])
    with pytest.raises(ValueError, match="truncated|not a readable"):
        torch_format.load(truncated)
