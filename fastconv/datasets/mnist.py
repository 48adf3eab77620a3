"""MNIST and Fashion-MNIST with the API of the book's ``dataset/mnist.py``.

``load_mnist(normalize, flatten, one_hot_label)`` returns ``(x_train, t_train), (x_test, t_test)``
as the book's function does. The four standard ``.gz`` files are looked for in ``data_dir=``,
then ``$FASTCONV_DATA/<dataset>/``, then the user cache dir, and downloaded into the last when
no folder has them. The parsed arrays are cached in an ``.npz`` so that later loads skip gzip.
"""
import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fastconv.datasets.idx import read_idx

key_file = {
    "train_img": "train-images-idx3-ubyte.gz",
    "train_label": "train-labels-idx1-ubyte.gz",
    "test_img": "t10k-images-idx3-ubyte.gz",
    "test_label": "t10k-labels-idx1-ubyte.gz",
}
train_num = 60000
test_num = 10000
img_dim = (1, 28, 28)
img_size = 784

_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# Official checksums; only downloads are checked against them, since a copy that a user put
# in place may legitimately differ (it is still validated by the parser).
_MD5 = {
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
_DOWNLOAD_TIMEOUT = 30  # seconds per blocking socket operation
_CACHE_NAME = "fastconv-cache.npz"
_CACHE_VERSION = 1  # bump when the cache layout changes, so old files count as stale
_memo = {}  # resolved data folder -> (source key, arrays): repeat loads in one process


class MNISTNotFoundError(FileNotFoundError):
    """No folder holds the four data files and they could not be downloaded."""


class MNISTFormatError(ValueError):
    """A data file is valid IDX but does not hold what an MNIST file should."""


class _DownloadError(RuntimeError):
    pass


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None,
               dataset="mnist", download=True, verbose=False):
    """Load MNIST as ``(x_train, t_train), (x_test, t_test)``, like the book's loader.

    normalize: images as float32 in [0, 1] (else uint8 0..255).
    flatten: images as (N, 784) (else (N, 1, 28, 28)).
    one_hot_label: labels as float64 (N, 10) one-hot rows (else uint8 (N,)).
    data_dir: a folder holding the four .gz files, searched before $FASTCONV_DATA/<dataset>
        and the user cache dir.
    dataset: "mnist" or "fashion-mnist" (same file names and format).
    download: fetch the files into the user cache dir when no folder has them.
    Every call returns new arrays that the caller may modify.
    """
    if dataset not in _MIRRORS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(_MIRRORS)}")
    folder = _locate(dataset, data_dir, download, verbose)
    arrays = _load_arrays(folder, dataset, verbose)
    return ((_as_images(arrays["train_img"], normalize, flatten),
             _as_labels(arrays["train_label"], one_hot_label)),
            (_as_images(arrays["test_img"], normalize, flatten),
             _as_labels(arrays["test_label"], one_hot_label)))


def load_fashion_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None,
                       download=True, verbose=False):
    """Load Fashion-MNIST; same arguments and result as :func:`load_mnist`."""
    return load_mnist(normalize, flatten, one_hot_label, data_dir=data_dir,
                      dataset="fashion-mnist", download=download, verbose=verbose)


def _as_images(raw, normalize, flatten):
    if normalize:
        images = raw.astype(np.float32)
        images /= 255.0  # in float32, as the book does, so values match it bit for bit
    else:
        images = raw.copy()
    return images.reshape(-1, img_size) if flatten else images.reshape(-1, *img_dim)


def _as_labels(raw, one_hot):
    if not one_hot:
        return raw.copy()
    rows = np.zeros((raw.size, 10))  # float64, as in the book
    rows[np.arange(raw.size), raw] = 1.0
    return rows


# ---- finding the files ----------------------------------------------------------------------

def _user_cache_dir(dataset):
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastconv" / dataset


def _search_dirs(dataset, data_dir):
    """The folders to look in, in order, each with where it came from."""
    dirs = []
    if data_dir is not None:
        dirs.append((Path(data_dir).expanduser(), "data_dir="))
    env_root = os.environ.get("FASTCONV_DATA")
    if env_root:
        dirs.append((Path(env_root).expanduser() / dataset, f"$FASTCONV_DATA/{dataset}"))
    dirs.append((_user_cache_dir(dataset), "user cache dir"))
    return dirs


def _missing_files(folder):
    return [name for name in key_file.values() if not (folder / name).is_file()]


def _locate(dataset, data_dir, download, verbose):
    """The first folder holding all four files, downloading them if none does."""
    dirs = _search_dirs(dataset, data_dir)
    for folder, _ in dirs:
        if not _missing_files(folder):
            return folder
    download_dir = dirs[-1][0]
    if not download:
        outcome = "No download was tried (download=False)."
    else:
        try:
            _download(dataset, download_dir, verbose)
            return download_dir
        except (_DownloadError, OSError) as exc:
            outcome = f"Downloading into {download_dir} failed: {exc}"
    raise MNISTNotFoundError(_not_found_message(dataset, dirs, outcome))


def _not_found_message(dataset, dirs, outcome):
    lines = [f"{dataset} data not found. Looked for the four files"]
    lines += [f"    {name}" for name in key_file.values()]
    lines.append("in these folders (one folder must hold all four):")
    for folder, origin in dirs:
        missing = _missing_files(folder)
        state = ("does not exist" if not folder.is_dir()
                 else "all missing" if len(missing) == len(key_file)
                 else "missing " + ", ".join(missing))
        lines.append(f"    {folder}  [{origin}; {state}]")
    lines.append(outcome)
    lines.append(f"To fix it, pass data_dir= a folder holding the four files, or set FASTCONV_DATA "
                 f"to a folder whose {dataset}/ subfolder holds them.")
    return "\n".join(lines)


# ---- downloading --------------------------------------------------------------------------

def _fetch(url, dest_path, timeout=_DOWNLOAD_TIMEOUT):
    """Stream ``url`` into the file ``dest_path`` with a progress bar (tests replace this)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest_path, "wb") as out:
        size = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=url.rsplit("/", 1)[-1]) as progress:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                progress.update(len(chunk))


def _md5(path):
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, so FIPS builds allow it
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(dataset, folder, verbose):
    folder.mkdir(parents=True, exist_ok=True)
    for name in _missing_files(folder):
        _download_file(dataset, name, folder, verbose)


def _download_file(dataset, name, folder, verbose):
    """Fetch ``name`` from the first mirror that serves it with the official checksum."""
    expected = _MD5[dataset][name]
    failures = []
    for mirror in _MIRRORS[dataset]:
        url = mirror + name
        if verbose:
            print(f"Downloading {url}")
        # A temp name in the same folder, renamed only once verified: an interrupted or
        # corrupt download can never pass for a complete file.
        fd, part_path = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=folder)
        os.close(fd)
        try:
            _fetch(url, part_path)
            digest = _md5(part_path)
            if digest == expected:
                os.replace(part_path, folder / name)
                return
            failures.append(f"{url}: MD5 {digest}, expected {expected}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            failures.append(f"{url}: {exc}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(part_path)
    raise _DownloadError(f"no mirror served {name}:" + "".join(f"\n    {f}" for f in failures))


# ---- parsing and caching ------------------------------------------------------------------

def _check(arrays, folder):
    """Raise MNISTFormatError unless the arrays look like MNIST (any number of samples)."""
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_img"], arrays[f"{split}_label"]
        images_path, labels_path = (folder / key_file[f"{split}_img"],
                                    folder / key_file[f"{split}_label"])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != img_dim[1:]:
            raise MNISTFormatError(
                f"{images_path}: expected N x 28 x 28 uint8 images, got shape {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise MNISTFormatError(
                f"{labels_path}: expected N uint8 labels, got shape {labels.shape}")
        if labels.size and labels.max() >= 10:
            raise MNISTFormatError(f"{labels_path}: label {labels.max()} is not a digit 0-9")
        if len(images) != len(labels):
            raise MNISTFormatError(f"{images_path} holds {len(images)} images but "
                                   f"{labels_path} holds {len(labels)} labels")


def _parse(folder):
    arrays = {key: read_idx(folder / name) for key, name in key_file.items()}
    _check(arrays, folder)
    return arrays


def _source_key(folder):
    """Identifies the source files' current state: a changed file gives a new key."""
    parts = [f"v{_CACHE_VERSION}", str(folder)]
    for name in key_file.values():
        stat = os.stat(folder / name)
        parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def _is_writable_dir(folder):
    # root passes os.access on every folder, so the mode bits are honoured too: a folder
    # marked read-only (such as a shared copy of the data) is not ours to write in.
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return os.access(folder, os.W_OK) and bool(mode & 0o222)


def _cache_paths(folder, dataset):
    """(where a cache may be read, where it may be written), in order of preference."""
    beside = folder / _CACHE_NAME
    folder_id = hashlib.sha1(str(folder).encode()).hexdigest()[:16]
    fallback = _user_cache_dir(dataset) / f"parsed-{folder_id}.npz"
    return [beside, fallback], ([beside] if _is_writable_dir(folder) else []) + [fallback]


def _read_cache(path, key, folder):
    """The arrays cached at ``path`` for ``key``, or None if absent, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["key"]) != key:
                return None
            arrays = {name: npz[name] for name in key_file}
        _check(arrays, folder)
        return arrays
    except Exception:  # the cache is only a shortcut: whatever is wrong with it, re-parse
        return None


def _write_cache(path, key, arrays):
    """Save ``arrays`` at ``path`` atomically; return whether that worked."""
    part_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, part_path = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, key=np.array(key), **arrays)
        os.replace(part_path, path)
        return True
    except OSError:
        if part_path is not None:
            with contextlib.suppress(OSError):
                os.remove(part_path)
        return False


def _load_arrays(folder, dataset, verbose):
    """The four uint8 arrays of ``folder``, from memory, the .npz cache, or parsing."""
    folder = folder.resolve()
    key = _source_key(folder)
    memo_key, arrays = _memo.get(str(folder), (None, None))
    if memo_key == key:
        return arrays
    read_paths, write_paths = _cache_paths(folder, dataset)
    for path in read_paths:
        arrays = _read_cache(path, key, folder)
        if arrays is not None:
            if verbose:
                print(f"Loaded {dataset} from the cache {path}")
            break
    else:
        if verbose:
            print(f"Parsing {dataset} from {folder}")
        arrays = _parse(folder)
        written = next((path for path in write_paths if _write_cache(path, key, arrays)), None)
        if verbose:
            print(f"Saved the parsed arrays to {written}" if written
                  else "Could not save a cache; the next process parses again")
    _memo[str(folder)] = (key, arrays)
    return arrays
