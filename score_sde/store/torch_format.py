"""Reading PyTorch `.pth` / `.pt` files without torch: state dicts -> numpy arrays.

    tree = torch_format.load("pt_inception-2015-12-05-6726825d.pth")   # {name: np.ndarray}

Both of torch's formats: the zip archive of torch >= 1.6 (`<name>/data.pkl` whose persistent ids
point at `<name>/data/<key>` storages) and the legacy stream of older files (magic number,
protocol, system info, the object, the storage keys, then each storage as an 8-byte element count
and its raw little-endian bytes). Tensors are rebuilt from their storage, offset, size and stride
(`torch._utils._rebuild_tensor_v2`). Unpickling is restricted to the classes state dicts use
(OrderedDict, the tensor and parameter rebuilders, storage types, and argparse.Namespace, which only
holds attributes); anything else is refused, so a file cannot run code.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pathlib
import pickle
import struct
import zipfile

import numpy as np

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Refused(ValueError):
    """What the reader itself found wrong (as opposed to an error of the bytes it parses)."""


def _bfloat16():
    import ml_dtypes

    return ml_dtypes.bfloat16


class _StorageType:
    def __init__(self, name: str):
        if name == "BFloat16Storage":
            self.dtype = np.dtype(_bfloat16())
        elif name in _DTYPES:
            self.dtype = np.dtype(_DTYPES[name])
        else:
            raise _Refused(f"unsupported tensor storage type torch.{name}")


class _Storage:
    """A typed storage whose bytes may arrive later (legacy files store them after the object)."""

    def __init__(self, dtype: np.dtype, numel: int | None = None, data: np.ndarray | None = None):
        self.dtype, self.numel, self.data = dtype, numel, data


class _Tensor:
    """A tensor to materialize once its storage's bytes are known."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = (
            storage,
            offset,
            tuple(size),
            tuple(stride),
        )

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise _Refused("a tensor's storage is missing from the file (truncated?)")
        if not self.size:
            return np.array(data[self.offset])
        itemsize = data.dtype.itemsize
        strides = tuple(s * itemsize for s in self.stride)
        end = (
            self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) + 1
        )
        if self.offset < 0 or end > len(data) and all(n > 0 for n in self.size):
            raise _Refused(f"tensor of size {self.size} does not fit its storage")
        view = np.lib.stride_tricks.as_strided(data[self.offset :], self.size, strides)
        return np.array(view)  # a contiguous copy


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, hooks, dtype, *rest):
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, hooks, *unused):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("argparse", "Namespace"): argparse.Namespace,  # the args of DiT's / SiT's train.py checkpoints
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict, read_storage):
        super().__init__(file, encoding="utf-8")
        self.storages, self.read_storage = storages, read_storage

    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise _Refused(
            f"the .pth file holds an object of type {module}.{name}, which a state dict does not "
            "contain; refusing to unpickle it"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise _Refused(f"unsupported persistent id in the .pth file: {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else np.dtype("u1")
        if key not in self.storages:
            self.storages[key] = _Storage(dtype, data=self.read_storage(key, dtype))
        return self.storages[key]


def _materialize(tree):
    if isinstance(tree, _Tensor):
        return tree.array()
    if isinstance(tree, dict):
        return type(tree)((k, _materialize(v)) for k, v in tree.items())
    if isinstance(tree, list | tuple):
        return type(tree)(_materialize(v) for v in tree)
    return tree


def _load_zip(path: str):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise _Refused(f"{path}: a zip without data.pkl is not a PyTorch file")
        prefix = pkl[0][: -len("data.pkl")]

        def read_storage(key, dtype):
            return np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=dtype)

        unpickler = _Unpickler(io.BytesIO(z.read(pkl[0])), {}, read_storage)
        return _materialize(unpickler.load())


def _load_legacy(path: str):
    # in memory: a junk length field then reads what is there instead of allocating it
    with io.BytesIO(pathlib.Path(path).read_bytes()) as f:
        # every record through the restricted unpickler: junk can never name a class to call
        plain = lambda: _Unpickler(f, {}, lambda key, dtype: None).load()
        if plain() != _LEGACY_MAGIC:  # a plain int
            raise _Refused(f"{path} is neither a zip nor a legacy PyTorch file")
        plain()  # protocol version
        plain()  # system info
        storages: dict = {}
        unpickler = _Unpickler(f, storages, lambda key, dtype: None)
        obj = unpickler.load()
        keys = plain()  # a list of strings
        if not isinstance(keys, list):
            raise _Refused(f"{path} is not a legacy PyTorch file (no storage list)")
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            if str(key) not in storages:
                raise _Refused(f"{path} names a storage {key!r} that no tensor uses")
            storage = storages[str(key)]
            nbytes = numel * storage.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise _Refused(f"{path} is truncated (storage {key})")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
        return _materialize(obj)


def load(path: str | os.PathLike):
    """The object of a PyTorch file with every tensor as a numpy array (float32 stays float32;
    bfloat16 as ml_dtypes.bfloat16). Raises ValueError for anything that is not a state dict."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a file")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except _Refused as e:
        message = str(e)
        raise ValueError(message if path in message else f"{path}: {message}") from None
    except Exception as e:  # any error of the bytes (pickle's own, zip, struct, numpy): one message
        reason = " ".join(str(e).encode("ascii", "replace").decode().split())[:160]
        raise ValueError(
            f"{path} is not a readable PyTorch file ({type(e).__name__}: {reason})"
        ) from None
