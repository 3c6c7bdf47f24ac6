"""Devices, mesh and sharding: data parallel over a ('data',) mesh on every device of every host,
or over a ('data', 'fsdp') mesh when parameters are sharded (config.training.mesh).

On a ('data',) mesh parameters and optimizer state are replicated. On a ('data', 'fsdp') mesh
every large leaf of the train state is split along its largest axis that the fsdp size divides
(`state_sharding`), the rest replicated; XLA gathers each weight where it is used. Batches are
sharded along their batch axis over every device of either mesh. Each process feeds only its own
rows of a global batch (`global_batch`), so a multi-host run reads every example exactly once per
step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
FSDP_MIN_SIZE = 1024  # leaves with fewer elements stay replicated (biases, norms, the step)


@dataclass(frozen=True)
class Topology:
    process_index: int
    process_count: int
    local_devices: int
    global_devices: int
    platform: str
    kind: str = ""  # the device kind ("NVIDIA H200", "TPU v5 lite", "cpu")

    def describe(self) -> str:
        return (
            f"process {self.process_index}/{self.process_count}, {self.local_devices} local / "
            f"{self.global_devices} global {self.platform} device(s) ({self.kind})"
        )


def maybe_initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    init_timeout: int = 60,
    heartbeat_timeout: int = 60,
) -> None:
    """Calls `jax.distributed.initialize` when this is one of several processes.

    Explicit arguments (launch flags) win; otherwise the environment decides:
    SCORE_SDE_COORDINATOR / SCORE_SDE_NUM_PROCESSES / SCORE_SDE_PROCESS_ID, or a cluster JAX detects
    itself (SLURM, TPU pods, Open MPI: pass coordinator='auto'). A single process does nothing.
    Start-up ends within `init_timeout` seconds (an unreachable coordinator, a peer that never
    joins: one ValueError naming the coordinator); a peer that stops answering mid-run ends the
    others after `heartbeat_timeout` seconds (JAX's coordination service).
    """
    coordinator = coordinator or os.environ.get("SCORE_SDE_COORDINATOR")
    if num_processes is None:
        num_processes = _env_int("SCORE_SDE_NUM_PROCESSES", "--num_processes")
    if process_id is None:
        process_id = _env_int("SCORE_SDE_PROCESS_ID", "--process_id")
    check_process_flags(coordinator, num_processes, process_id, init_timeout, heartbeat_timeout)
    # XLA's own start-up deadline comes after the watchdog of _initialize.
    timeouts = dict(
        initialization_timeout=init_timeout + 30, heartbeat_timeout_seconds=heartbeat_timeout
    )
    if coordinator == "auto":
        _initialize("the cluster's coordinator (auto-detected)", init_timeout, **timeouts)
        return
    if coordinator is None:
        if (num_processes or 1) > 1:
            raise ValueError(
                f"--num_processes={num_processes} needs --coordinator=HOST:PORT (or 'auto' on a "
                "cluster JAX detects: SLURM, TPU pod, Open MPI)"
            )
        return
    if num_processes is None or process_id is None:
        raise ValueError(
            f"--coordinator={coordinator} needs --num_processes and --process_id as well "
            "(or SCORE_SDE_NUM_PROCESSES / SCORE_SDE_PROCESS_ID)"
        )
    _initialize(
        f"{coordinator} (process {process_id} of {num_processes})",
        init_timeout,
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        **timeouts,
    )


def _env_int(name: str, flag: str) -> int | None:
    text = os.environ.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"${name}={text!r} must be an integer (the {flag} of this process)"
        ) from None


def check_process_flags(
    coordinator: str | None,
    num_processes: int | None,
    process_id: int | None,
    init_timeout: int = 60,
    heartbeat_timeout: int = 60,
) -> None:
    """Checks the multi-process flags before JAX sees them (a malformed address can crash its
    client): --coordinator is 'auto' or HOST:PORT with a port in 1..65535 ([IPv6]:PORT too),
    --num_processes >= 1, 0 <= --process_id < --num_processes, both timeouts >= 1 s. One
    ValueError naming the flag, its value and the expected form."""
    for flag, value in (
        ("--init_timeout", init_timeout),
        ("--heartbeat_timeout", heartbeat_timeout),
    ):
        if value < 1:
            raise ValueError(f"{flag}={value} must be at least 1 (seconds)")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"--num_processes={num_processes} must be >= 1")
    if process_id is not None:
        if process_id < 0 or (num_processes is not None and process_id >= num_processes):
            raise ValueError(
                f"--process_id={process_id} must lie in [0, --num_processes={num_processes}): "
                "the processes are numbered 0 .. num_processes - 1"
            )
    if coordinator is None or coordinator == "auto":
        return
    host, sep, port = coordinator.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    host_ok = bracketed or (host and not any(c in host for c in " /[]:@"))
    if not sep or not host_ok or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"--coordinator={coordinator!r} must be HOST:PORT with a port in 1..65535 (e.g. "
            "--coordinator=10.0.0.1:1234 or [::1]:1234), or 'auto' on a cluster JAX detects"
        )


def _initialize(where: str, timeout: int, **kwargs) -> None:
    """jax.distributed.initialize, or one `error:` line and exit status 2 after `timeout` s.

    XLA's own start-up timeout aborts the process with a C++ stack trace; a watchdog thread
    (armed a little before it) prints the line that names the coordinator instead.
    """
    import sys
    import threading

    def expire():
        print(
            f"error: multi-process start-up: no complete group within {timeout} s at the "
            f"coordinator {where}; check that every process runs with the same --coordinator "
            "and --num_processes, that process 0 is up and the address is reachable, or raise "
            "--init_timeout",
            file=sys.stderr,
            flush=True,
        )
        os._exit(2)

    watchdog = threading.Timer(timeout, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(**kwargs)
    finally:
        watchdog.cancel()


def topology() -> Topology:
    return Topology(
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].platform,
        jax.devices()[0].device_kind,
    )


def make_mesh(num_devices: int | None = None, shape: tuple[int, int] = (-1, 1)) -> Mesh:
    """A ('data',) mesh over all devices (or the first `num_devices`, for tests); with `shape`
    (data, fsdp) sizes of fsdp > 1 (config.training.mesh; -1: what the other leaves) a
    ('data', 'fsdp') mesh, devices in the order of jax.devices()."""
    devices = jax.devices() if num_devices is None else jax.devices()[:num_devices]
    data, fsdp = shape
    n = len(devices)
    if fsdp < 1 or n % fsdp or (data != -1 and data * fsdp != n):
        raise ValueError(
            f"config.training.mesh {tuple(shape)} (data, fsdp) does not fit the {n} devices: "
            f"use fsdp sizes that divide {n} and data = -1, e.g. --config.training.mesh="
            f"'(-1, {2 if n % 2 == 0 else 1})'"
        )
    if fsdp == 1:
        return Mesh(np.asarray(devices), (DATA_AXIS,))
    return Mesh(np.asarray(devices).reshape(n // fsdp, fsdp), (DATA_AXIS, FSDP_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def _batch_axes(mesh: Mesh) -> str | tuple[str, ...]:
    return DATA_AXIS if mesh.axis_names == (DATA_AXIS,) else tuple(mesh.axis_names)


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Shards axis `batch_axis` over every device of the mesh (axis 1 for stacked [steps, B, ...]
    batches)."""
    return NamedSharding(mesh, P(*([None] * batch_axis), _batch_axes(mesh)))


def leaf_sharding(shape: tuple[int, ...], mesh: Mesh) -> NamedSharding:
    """A train-state leaf's sharding: on a mesh with an fsdp axis, a leaf of at least
    FSDP_MIN_SIZE elements split along its largest axis that the fsdp size divides (the first
    such on ties); otherwise replicated."""
    n = dict(mesh.shape).get(FSDP_AXIS, 1)
    if n == 1 or int(np.prod(shape, dtype=np.int64)) < FSDP_MIN_SIZE:
        return replicated(mesh)
    fits = [i for i, d in enumerate(shape) if d % n == 0]
    if not fits:
        return replicated(mesh)
    axis = max(fits, key=lambda i: (shape[i], -i))
    return NamedSharding(mesh, P(*([None] * axis), FSDP_AXIS))


def state_sharding(tree, mesh: Mesh):
    """`leaf_sharding` of every leaf of `tree` (arrays or ShapeDtypeStructs): the tree of
    NamedShardings a train state (or parameters) lives in on `mesh`."""
    return jax.tree.map(lambda x: leaf_sharding(tuple(np.shape(x)), mesh), tree)


def check_batch_size(
    batch_size: int, mesh: Mesh, field: str = "config.training.batch_size"
) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"{field} ({batch_size}) must be divisible by the number of devices ({n}); "
            f"use a multiple of {n}, e.g. {field}={max(n, batch_size // n * n)}"
        )


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
    """Rows of a global batch this process feeds (its devices' share)."""
    n_local = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    return global_batch * n_local // mesh.devices.size


def global_batch(local, mesh: Mesh, batch_axis: int = 0):
    """Assembles per-process host arrays (pytree) into global arrays sharded along `batch_axis`."""
    sharding = batch_sharding(mesh, batch_axis)

    def one(x):
        x = np.asarray(x)
        shape = list(x.shape)
        shape[batch_axis] = shape[batch_axis] * mesh.devices.size // _local_devices(mesh)
        return jax.make_array_from_process_local_data(sharding, x, tuple(shape))

    return jax.tree.map(one, local)


def _local_devices(mesh: Mesh) -> int:
    return sum(d.process_index == jax.process_index() for d in mesh.devices.flat)


def shard_rows(tree, mesh: Mesh):
    """Host arrays [B, ...] identical on every process -> global arrays sharded along B (each
    process places only the rows of its own devices)."""
    sharding = batch_sharding(mesh)

    def one(a):
        a = np.ascontiguousarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(one, tree)


def replicate(tree, mesh: Mesh):
    """Puts a host pytree (identical on every process) on every device of the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda _: x), tree
    )


def to_host(tree):
    """Global arrays (sharded, replicated or local) -> the full numpy arrays, on every process
    (sharded arrays spanning several processes are all-gathered)."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if x.sharding.is_fully_replicated:
                return np.asarray(x.addressable_data(0))
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def is_main_process() -> bool:
    """Process 0 logs and writes files; the others compute and stay silent."""
    return jax.process_index() == 0


def max_over_processes(value: int) -> int:
    """The largest of every process's `value`, on every process (one all-gather)."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    values = multihost_utils.process_allgather(np.array(value, np.int32))
    return int(np.asarray(values).max())
