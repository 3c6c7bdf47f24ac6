"""The post-hoc EMA snapshot files (store/phema_files.py), on a disk and on gs://: written and
listed by (step, std), read back bit for bit into the params' tree; a damaged, renamed or foreign
file is one ValueError naming it."""

from __future__ import annotations

import numpy as np
import pytest

from score_sde.store import fs, phema_files


def _tree(scale: float = 1.0) -> dict:
    return {
        "dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3) * scale},
        "bias": [np.full(3, scale, np.float32)],
    }


@pytest.fixture(params=["local", "gs"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "run")
    return request.getfixturevalue("bucket") + "/run"


def test_written_snapshots_list_and_read_back(root):
    assert phema_files.listing(root) == []
    for step in (20, 10):
        for std in (0.1, 0.05):
            phema_files.write(root, step, std, _tree(step + std))
    fs.write_text(f"{root}/phema/10/notes.txt", "not a snapshot")  # passed over
    fs.write_text(f"{root}/phema/latest/std-0.1.npz", "x")  # not a step directory
    found = phema_files.listing(root)
    assert [(s.step, s.std) for s in found] == [(10, 0.05), (10, 0.1), (20, 0.05), (20, 0.1)]
    assert found[0].path.endswith("phema/10/std-0.05.npz")
    back = phema_files.read(found[3], _tree(0.0))
    np.testing.assert_array_equal(back["dense"]["kernel"], _tree(20.1)["dense"]["kernel"])
    np.testing.assert_array_equal(back["bias"][0], _tree(20.1)["bias"][0])
    assert back["bias"][0].dtype == np.float32


def test_damaged_renamed_and_foreign_files_are_one_error_each(tmp_path):
    root = str(tmp_path)
    path = phema_files.write(root, 10, 0.05, _tree())
    (snap,) = phema_files.listing(root)
    with pytest.raises(ValueError, match="another network.*dense.kernel"):
        phema_files.read(snap, {"dense": {"kernel": np.zeros((3, 2))}, "bias": [np.zeros(3)]})
    renamed = tmp_path / "phema" / "30" / "std-0.05.npz"
    renamed.parent.mkdir()
    renamed.write_bytes(open(path, "rb").read())
    with pytest.raises(ValueError, match=r"holds step 10 .*renamed or copied by hand"):
        phema_files.read(phema_files.listing(root)[1], _tree())
    data = bytearray(open(path, "rb").read())
    data[100] ^= 0xFF  # a flipped byte in the first array: the zip's CRC-32 catches it
    open(path, "wb").write(bytes(data))
    with pytest.raises(ValueError, match=f"{path} cannot be read"):
        phema_files.read(snap, _tree())
