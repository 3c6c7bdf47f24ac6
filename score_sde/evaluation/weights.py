"""pytorch-fid's Inception weight file: its address, its SHA-256 check and a verified download.

torch.hub's convention: the hex digits at the end of the name (`...-6726825d.pth`) are the start of
the file's SHA-256. `python -m score_sde.evaluation.inception --fetch` downloads with `download`,
then converts (see score_sde.evaluation.inception).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.request

WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth"
)
PTH_NAME = WEIGHTS_URL.rsplit("/", 1)[1]


def digest_in_name(path: str | os.PathLike) -> str | None:
    """The SHA-256 prefix a file name carries (`name-<8+ hex digits>.ext`), or None."""
    match = re.search(r"-([0-9a-f]{8,64})\.[^.]+$", os.path.basename(os.fspath(path)))
    return match.group(1) if match else None


SHA256_PREFIX = digest_in_name(PTH_NAME)  # "6726825d"


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a local file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def check_digest(path: str | os.PathLike, expected: str) -> None:
    """Raises ValueError unless the SHA-256 of `path` starts with the hex digits `expected`."""
    actual = sha256(path)
    if not actual.startswith(expected.lower()):
        raise ValueError(
            f"{os.fspath(path)} has SHA-256 {actual[: len(expected)]}..., expected {expected}..."
        )


def download(
    dest: str | os.PathLike,
    url: str | None = None,
    *,
    expected: str | None = None,
    timeout: float = 60.0,
) -> None:
    """`url` (default WEIGHTS_URL) -> the local file `dest`, kept only if its SHA-256 starts with
    `expected` (default SHA256_PREFIX), with a progress bar when stderr is a terminal.

    Raises OSError when the file cannot be fetched (urllib's URLError, a timeout, a cut
    connection), ValueError naming both digest prefixes when it is not the expected file.
    """
    from tqdm import tqdm

    url = url or WEIGHTS_URL
    expected = expected or SHA256_PREFIX or ""
    dest = os.fspath(dest)
    part = dest + ".part"
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as f:
                size = int(response.headers.get("Content-Length") or 0) or None
                name = os.path.basename(dest)
                bar = tqdm(
                    total=size, unit="B", unit_scale=True, desc=name, leave=False, disable=None
                )
                with bar:
                    while chunk := response.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        except http.client.HTTPException as e:  # a cut connection (IncompleteRead, ...)
            raise ConnectionError(f"{type(e).__name__}: {e}") from e
        actual = sha256(part)
        if not actual.startswith(expected.lower()):
            raise ValueError(
                f"the file downloaded from {url} has SHA-256 {actual[: len(expected)]}..., "
                f"expected {expected}... (damaged or changed); it was not kept: try again"
            )
        os.replace(part, dest)
    finally:
        if os.path.exists(part):
            os.remove(part)
