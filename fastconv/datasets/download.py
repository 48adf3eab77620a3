"""Downloading the MNIST-style files: known mirrors, checksums, sizes, and a deadline.

Each file is streamed into a temporary file beside its final name (:func:`atomic_write`) and
renamed only once its MD5 matches the official one, so an interrupted or wrong download never
passes for a complete file. A download stops, and counts as failed, when it takes longer than
``DEADLINE`` seconds in all (not per read: a server trickling one byte at a time is cut off) or
grows past the file's known size; the ``Content-Length`` is checked before the first byte.
"""
import hashlib
import http.client
import time
import urllib.request

from tqdm import tqdm

from fastconv.fileio import atomic_write, remove_stale_temporaries

__all__ = ["MIRRORS", "MD5", "SIZES", "DEADLINE", "READ_TIMEOUT", "DownloadError", "fetch",
           "download", "download_file", "size_cap"]

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# Official checksums; only downloads are checked against them, since a copy that a user put
# in place may legitimately differ (it is still validated by the parser).
MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
# The published files' sizes in bytes. A download may not exceed them by more than a quarter
# (a margin, so that a size misremembered here cannot block a good file: the MD5 decides).
SIZES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": 9_912_422,
        "train-labels-idx1-ubyte.gz": 28_881,
        "t10k-images-idx3-ubyte.gz": 1_648_877,
        "t10k-labels-idx1-ubyte.gz": 4_542,
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": 26_421_880,
        "train-labels-idx1-ubyte.gz": 29_515,
        "t10k-images-idx3-ubyte.gz": 4_422_102,
        "t10k-labels-idx1-ubyte.gz": 5_148,
    },
}
DEADLINE = 600.0  # seconds for one file, from the request to the last byte
READ_TIMEOUT = 30.0  # seconds one blocking socket operation may wait
# A temporary file older than this cannot belong to a download still running: it was left by
# a killed one, and is removed.
STALE_AFTER = DEADLINE + 2 * READ_TIMEOUT


class DownloadError(RuntimeError):
    """A file could not be fetched whole, in time, with the official checksum."""


def size_cap(dataset, name):
    return SIZES[dataset][name] * 5 // 4 + 4096


def fetch(url, out, max_bytes, deadline):
    """Stream ``url`` into the binary file object ``out`` (tests replace this).

    Raises DownloadError once more than ``max_bytes`` arrive or ``time.monotonic()`` passes
    ``deadline``; each read waits at most READ_TIMEOUT (or what is left of the deadline).
    """
    timeout = max(0.1, min(READ_TIMEOUT, deadline - time.monotonic()))
    with urllib.request.urlopen(url, timeout=timeout) as response:
        declared = int(response.headers.get("Content-Length") or 0) or None
        if declared is not None and declared > max_bytes:
            raise DownloadError(f"{url}: {declared} bytes announced, more than the "
                                f"{max_bytes} this file can have")
        received = 0
        with tqdm(total=declared, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=url.rsplit("/", 1)[-1]) as progress:
            # read1: one network read at a time, so the deadline is checked between reads
            # (read(n) would wait for all n bytes however slowly they come)
            read = getattr(response, "read1", response.read)
            while chunk := read(1 << 16):
                received += len(chunk)
                if received > max_bytes:
                    raise DownloadError(f"{url}: more than the {max_bytes} bytes this file "
                                        f"can have")
                if time.monotonic() > deadline:
                    raise DownloadError(f"{url}: not complete after {DEADLINE:.0f} s "
                                        f"({received} bytes received)")
                out.write(chunk)
                progress.update(len(chunk))


class _HashingWriter:
    """Writes through to a file while computing the MD5 of what passed."""

    def __init__(self, out):
        self.out = out
        self.md5 = hashlib.md5(usedforsecurity=False)  # an integrity check: FIPS builds allow it

    def write(self, data):
        self.md5.update(data)
        return self.out.write(data)


def remove_stale_downloads(folder, names):
    """Remove the temporary files killed downloads of ``names`` left in ``folder``."""
    for name in names:
        remove_stale_temporaries(folder / name, min_age=STALE_AFTER)
        for left in folder.glob(name + ".*.part"):  # the names older versions used
            if time.time() - left.stat().st_mtime > STALE_AFTER:
                left.unlink(missing_ok=True)


def download_file(dataset, name, folder, verbose=False):
    """Fetch ``name`` into ``folder`` from the first mirror that serves it intact."""
    expected = MD5[dataset][name]
    failures = []
    for mirror in MIRRORS[dataset]:
        url = mirror + name
        if verbose:
            print(f"Downloading {url}")
        deadline = time.monotonic() + DEADLINE
        try:
            with atomic_write(folder / name) as out:
                writer = _HashingWriter(out)
                fetch(url, writer, size_cap(dataset, name), deadline)
                digest = writer.md5.hexdigest()
                if digest != expected:  # raised inside: the temporary file is removed
                    raise DownloadError(f"{url}: MD5 {digest}, expected {expected}")
            return
        except (DownloadError, OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(str(exc) if str(exc).startswith(url) else f"{url}: {exc}")
    raise DownloadError(f"no mirror served {name}:" + "".join(f"\n    {f}" for f in failures))


def download(dataset, folder, names, verbose=False):
    """Fetch the files ``names`` of ``dataset`` into ``folder``, clearing killed runs' leftovers."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_downloads(folder, names)
    for name in names:
        download_file(dataset, name, folder, verbose)
