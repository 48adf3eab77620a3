"""MNIST and Fashion-MNIST with the API of the book's ``dataset/mnist.py``.

``load_mnist(normalize, flatten, one_hot_label)`` returns ``(x_train, t_train), (x_test, t_test)``
as the book's function does. The four standard ``.gz`` files are looked for in ``data_dir=``,
then ``$FASTCONV_DATA/<dataset>/``, then the user cache dir, and downloaded into the last when
no folder has them (:mod:`fastconv.datasets.download`). A ``data_dir`` without them may hold
the book's own cache, ``mnist.pkl``, read by a restricted reader. The parsed arrays are cached
in an ``.npz`` keyed on a hash of the ``.gz`` files' content, so that later loads skip gzip and
a replaced file is never served from a stale cache.
"""
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from fastconv.datasets import download as _downloads
from fastconv.datasets.idx import read_idx
from fastconv.fileio import atomic_write, open_regular, read_at_most, remove_stale_temporaries
from fastconv.nets.params_pickle import read_pickled_params

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

BOOK_PICKLE = "mnist.pkl"  # the cache the book's dataset/mnist.py writes beside the .gz files
# No file of a split holds more than the training set's 60000 samples: an IDX header or a
# cached array declaring more is refused before its data is read.
_MAX_SAMPLES = train_num
_MAX_VALUES = {"train_img": _MAX_SAMPLES * img_size, "train_label": _MAX_SAMPLES,
               "test_img": _MAX_SAMPLES * img_size, "test_label": _MAX_SAMPLES}
_MAX_ARRAY_BYTES = _MAX_SAMPLES * img_size + 4096  # an .npy member: the values and a header
_CACHE_NAME = "fastconv-cache.npz"
_CACHE_VERSION = 2  # bump when the cache layout changes, so old files count as stale
_memo = {}  # resolved data folder -> (content key, arrays): repeat loads in one process


class MNISTNotFoundError(FileNotFoundError):
    """No folder holds the four data files and they could not be downloaded."""


class MNISTFormatError(ValueError):
    """A data file is valid IDX but does not hold what an MNIST file should."""


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None,
               dataset="mnist", download=True, verbose=False):
    """Load MNIST as ``(x_train, t_train), (x_test, t_test)``, like the book's loader.

    normalize: images as float32 in [0, 1] (else uint8 0..255).
    flatten: images as (N, 784) (else (N, 1, 28, 28)).
    one_hot_label: labels as float64 (N, 10) one-hot rows (else uint8 (N,)).
    data_dir: a folder (str or path) searched first. It is used when it holds the four .gz
        files; else, for dataset="mnist", when it holds the book's cache ``mnist.pkl`` (a
        pickle of a dict with uint8 arrays train_img (N, 784), train_label (N,), test_img,
        test_label), which is read without running any code from it and with its size
        bounded; else the search goes on in $FASTCONV_DATA/<dataset> and the user cache dir.
        Nothing is written into data_dir unless it is writable and holds the .gz files (the
        parsed cache, ``fastconv-cache.npz``).
    dataset: "mnist" or "fashion-mnist" (same file names and format).
    download: fetch the files into the user cache dir when no folder has them.
    Every call returns new arrays that the caller may modify. Raises MNISTNotFoundError
    (a FileNotFoundError) naming every folder tried when no data is found, and
    IDXFormatError or MNISTFormatError (ValueErrors) naming the file when one is malformed.
    """
    if dataset not in _downloads.MIRRORS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of "
                         f"{sorted(_downloads.MIRRORS)}")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a folder, as a str or a path; got "
                        f"{type(data_dir).__name__}")
    folder = _locate(dataset, data_dir, download, verbose)
    if _missing_files(folder):  # only a data_dir holding the book's pickle gets here
        arrays = read_book_pickle(folder / BOOK_PICKLE)
    else:
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
    """The first folder holding all four files (or data_dir with mnist.pkl), else a download."""
    dirs = _search_dirs(dataset, data_dir)
    for index, (folder, _) in enumerate(dirs):
        if not _missing_files(folder):
            return folder
        if index == 0 and data_dir is not None and dataset == "mnist" \
                and (folder / BOOK_PICKLE).is_file():
            return folder
    download_dir = dirs[-1][0]
    if not download:
        outcome = "No download was tried (download=False)."
    else:
        try:
            _downloads.download(dataset, download_dir, _missing_files(download_dir), verbose)
            return download_dir
        except (_downloads.DownloadError, OSError) as exc:
            outcome = f"Downloading into {download_dir} failed: {exc}"
    raise MNISTNotFoundError(_not_found_message(dataset, dirs, outcome))


def _folder_state(folder):
    """What keeps ``folder`` from serving: where it is, or a path on the way to it, is no
    folder, or which of the four files it lacks (a folder or a device in a file's place
    counts as missing, and says so)."""
    if not folder.is_dir():
        for path in (folder, *folder.parents):
            if path.exists() and not path.is_dir():
                return f"{path} is not a folder" if path != folder else "not a folder"
        return "does not exist"
    missing = _missing_files(folder)
    if len(missing) == len(key_file) and not any((folder / name).exists() for name in missing):
        return "all missing"
    return "missing " + ", ".join(
        name if not (folder / name).exists() else f"{name} (not a regular file)"
        for name in missing)


def _not_found_message(dataset, dirs, outcome):
    lines = [f"{dataset} data not found. Looked for the four files"]
    lines += [f"    {name}" for name in key_file.values()]
    lines.append("in these folders (one folder must hold all four):")
    for folder, origin in dirs:
        lines.append(f"    {folder}  [{origin}; {_folder_state(folder)}]")
    lines.append(outcome)
    book_pickle = f" (or the book's {BOOK_PICKLE})" if dataset == "mnist" else ""
    lines.append(f"To fix it, pass data_dir= a folder holding the four files{book_pickle}, "
                 f"or set FASTCONV_DATA to a folder whose {dataset}/ subfolder holds them.")
    return "\n".join(lines)


# ---- parsing and caching ------------------------------------------------------------------

def _check(arrays, folder, source=None):
    """Raise MNISTFormatError unless the arrays look like MNIST (any number of samples).

    Errors name the file each array came from: ``source`` if given, else its .gz in folder.
    """
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_img"], arrays[f"{split}_label"]
        images_path, labels_path = (source or folder / key_file[f"{split}_img"],
                                    source or folder / key_file[f"{split}_label"])
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
    arrays = {key: read_idx(folder / name, max_items=_MAX_VALUES[key])
              for key, name in key_file.items()}
    _check(arrays, folder)
    return arrays


def _content_key(folder):
    """A digest of the four files' bytes: any change to any of them gives a new key.

    Size and mtime are not enough (``cp -p`` and ``rsync -t`` keep both); hashing the 11 MB
    of MNIST's .gz files takes some tens of milliseconds, a small part of a load.
    """
    digest = hashlib.blake2b(f"v{_CACHE_VERSION}".encode(), digest_size=20)
    for name in key_file.values():
        with open_regular(folder / name) as f:
            while block := f.read(1 << 20):
                digest.update(block)
        digest.update(b"\0" + name.encode() + b"\0")
    return digest.hexdigest()


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
    """The arrays cached at ``path`` for ``key``, or None if absent, stale or unreadable.

    Whoever can write the data folder can write this file, so it is read as untrusted: no
    pickles, and no member larger than MNIST's largest array is inflated.
    """
    try:
        with open_regular(path) as handle, zipfile.ZipFile(handle) as archive:
            if any(member.file_size > _MAX_ARRAY_BYTES for member in archive.infolist()):
                return None
        with open_regular(path) as handle, np.load(handle, allow_pickle=False) as npz:
            if set(npz.files) != {"key", *key_file} or str(npz["key"]) != key:
                return None
            arrays = {name: npz[name] for name in key_file}
        _check(arrays, folder)
        return arrays
    except Exception:  # the cache is only a shortcut: whatever is wrong with it, re-parse
        return None


def _write_cache(path, key, arrays):
    """Save ``arrays`` at ``path`` atomically; return whether that worked."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path, min_age=_downloads.STALE_AFTER)
        with atomic_write(path) as f:
            np.savez(f, key=np.array(key), **arrays)
        return True
    except OSError:
        return False


def _load_arrays(folder, dataset, verbose):
    """The four uint8 arrays of ``folder``, from memory, the .npz cache, or parsing."""
    folder = folder.resolve()
    key = _content_key(folder)
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


# ---- the book's mnist.pkl -----------------------------------------------------------------

def read_book_pickle(path):
    """The four uint8 arrays in the book's ``mnist.pkl``, as ``{key: array}``.

    The file is read without trusting it: at most the size MNIST's arrays need (twice that,
    for the older pickle protocols' latin-1 text), only the NumPy array recipes a pickle of
    arrays uses, and only uint8 arrays of MNIST's shapes come back (images as N x 28 x 28).
    Raises MNISTFormatError naming the file otherwise.
    """
    path = Path(path)
    values = sum(_MAX_VALUES.values())
    limit = 2 * values + 64 * 1024
    size = path.stat().st_size
    if size > limit:
        raise MNISTFormatError(f"{path}: {size} bytes is more than MNIST's arrays need "
                               f"(at most {limit})")
    data = read_at_most(path, limit)
    if data is None:  # it grew since the size was checked
        raise MNISTFormatError(f"{path}: more than {limit} bytes")
    try:
        loaded = read_pickled_params(data, str(path), max_opcodes=1000)
    except Exception as exc:  # UnpicklingError, TypeError, ValueError: all a malformed file
        raise MNISTFormatError(f"not a readable MNIST pickle: {exc}") from None
    if set(loaded) != set(key_file):
        raise MNISTFormatError(f"{path}: expected the keys {sorted(key_file)}, found "
                               f"{sorted(loaded)}")
    arrays = {}
    for key, array in loaded.items():
        if key.endswith("_img") and array.ndim == 2 and array.shape[1] == img_size:
            array = array.reshape(-1, 28, 28)  # the book stores flattened images
        arrays[key] = array
    _check(arrays, path.parent, source=path)
    return arrays
