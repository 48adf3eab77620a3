"""Tests for fastconv.datasets: the IDX reader/writer and the MNIST loader.

Most tests build tiny MNIST-shaped files in tmp_path. Those marked ``mnist`` read the real files
from $FASTCONV_DATA/mnist and are skipped without them. No test reaches the network: downloads
go through a fake ``fetch``, or through the real one reading a file:// URL or a local HTTP
server on 127.0.0.1 whose every loop is bounded.
"""
import gzip
import hashlib
import http.server
import os
import pickle
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastconv.datasets.download as downloads
import fastconv.datasets.mnist as mnist_loader
from conftest import peak_bytes
from fastconv.datasets import (IDXFormatError, MNISTFormatError, MNISTNotFoundError,
                               load_fashion_mnist, load_mnist, read_idx, write_idx)

FILE_NAMES = list(mnist_loader.key_file.values())
REAL_DATA_ROOT = os.environ.get("FASTCONV_DATA")  # read before the fixtures below hide it
REAL_FETCH = downloads.fetch


def _no_network(url, out, *args, **kwargs):
    raise OSError(f"tests do not use the network ({url})")


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Hide the caller's FASTCONV_DATA, user cache and memo; make every download fail."""
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr(mnist_loader, "_memo", {})
    monkeypatch.setattr(downloads, "fetch", _no_network)


def user_cache(tmp_path, dataset="mnist"):
    return tmp_path / "xdg-cache" / "fastconv" / dataset


def make_mnist_files(folder, n_train=5, n_test=3, seed=0):
    """Write the four files with random content into ``folder``; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_img": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_label": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_img": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_label": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in mnist_loader.key_file.items():
        write_idx(folder / name, arrays[key])
    return arrays


def idx_bytes(array):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def forbid_parsing(monkeypatch):
    def refuse(path):
        raise AssertionError(f"parsed {path} although a cache should have served it")
    monkeypatch.setattr(mnist_loader, "read_idx", refuse)


# ---- IDX format -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["data.idx", "data.idx.gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5), (0, 28, 28)])
def test_idx_round_trip(tmp_path, name, shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    write_idx(tmp_path / name, array)
    loaded = read_idx(tmp_path / name)
    assert loaded.dtype == np.uint8 and loaded.shape == shape
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable


def test_write_idx_gzips_only_gz_names(tmp_path):
    write_idx(tmp_path / "a.gz", np.arange(4, dtype=np.uint8))
    write_idx(tmp_path / "a.idx", np.arange(4, dtype=np.uint8))
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert (tmp_path / "a.idx").read_bytes() == idx_bytes(np.arange(4))


def test_write_idx_rejects_other_dtypes(tmp_path):
    with pytest.raises(TypeError):
        write_idx(tmp_path / "a.gz", np.arange(4, dtype=np.int32))


VALID = idx_bytes(np.arange(6).reshape(2, 3))
VALID_GZ = gzip.compress(VALID)
BAD_IDX_FILES = {
    "bad magic": gzip.compress(b"\x01\x00" + VALID[2:]),
    "wrong dtype code": gzip.compress(VALID[:2] + b"\x0d" + VALID[3:]),
    "no dimensions": gzip.compress(b"\x00\x00\x08\x00"),
    "truncated header": gzip.compress(VALID[:9]),
    "truncated payload": gzip.compress(VALID[:-1]),
    "trailing bytes": gzip.compress(VALID + b"\x00"),
    "truncated gzip": VALID_GZ[:len(VALID_GZ) // 2],
    "gzip CRC error": VALID_GZ[:-8] + bytes([VALID_GZ[-8] ^ 0xFF]) + VALID_GZ[-7:],
    "not gzip nor IDX": b"hello, world",
    "empty file": b"",
    "raw, trailing bytes": VALID + b"\x00\x00",
}


@pytest.mark.parametrize("content", BAD_IDX_FILES.values(), ids=BAD_IDX_FILES.keys())
def test_read_idx_rejects_malformed_files(tmp_path, content):
    path = tmp_path / "broken-idx1-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(IDXFormatError, match="broken-idx1-ubyte.gz"):
        read_idx(path)


# ---- loading ------------------------------------------------------------------------------

def test_module_constants_match_the_book():
    assert mnist_loader.key_file == {
        "train_img": "train-images-idx3-ubyte.gz", "train_label": "train-labels-idx1-ubyte.gz",
        "test_img": "t10k-images-idx3-ubyte.gz", "test_label": "t10k-labels-idx1-ubyte.gz"}
    assert (mnist_loader.img_size, mnist_loader.img_dim) == (784, (1, 28, 28))
    assert (mnist_loader.train_num, mnist_loader.test_num) == (60000, 10000)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot_label", [True, False])
def test_shapes_and_dtypes(tmp_path, normalize, flatten, one_hot_label):
    written = make_mnist_files(tmp_path / "data")
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize, flatten, one_hot_label, data_dir=tmp_path / "data")
    image_tail = (784,) if flatten else (1, 28, 28)
    assert x_train.shape == (5, *image_tail) and x_test.shape == (3, *image_tail)
    assert x_train.dtype == x_test.dtype == (np.float32 if normalize else np.uint8)
    if one_hot_label:
        assert t_train.shape == (5, 10) and t_test.shape == (3, 10)
        assert t_train.dtype == t_test.dtype == np.float64
    else:
        assert t_train.shape == (5,) and t_test.shape == (3,)
        assert t_train.dtype == t_test.dtype == np.uint8
        np.testing.assert_array_equal(t_train, written["train_label"])
    if not normalize:
        np.testing.assert_array_equal(x_test.reshape(3, 28, 28), written["test_img"])


def test_normalized_values_are_raw_over_255_in_float32(tmp_path):
    written = make_mnist_files(tmp_path / "data")
    (x_train, _), _ = load_mnist(normalize=True, data_dir=tmp_path / "data")
    expected = written["train_img"].reshape(5, 784).astype(np.float32)
    expected /= np.float32(255.0)
    np.testing.assert_array_equal(x_train, expected)
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0


def test_one_hot_rows(tmp_path):
    written = make_mnist_files(tmp_path / "data")
    (_, t_train), (_, t_test) = load_mnist(one_hot_label=True, data_dir=tmp_path / "data")
    for rows, labels in [(t_train, written["train_label"]), (t_test, written["test_label"])]:
        assert set(np.unique(rows)) <= {0.0, 1.0}
        np.testing.assert_array_equal(rows.sum(axis=1), 1.0)
        np.testing.assert_array_equal(rows.argmax(axis=1), labels)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
def test_returned_arrays_are_fresh_and_writable(tmp_path, normalize, flatten):
    written = make_mnist_files(tmp_path / "data")
    first = load_mnist(normalize, flatten, data_dir=tmp_path / "data")
    for array in [*first[0], *first[1]]:
        assert array.flags.writeable
        array[...] = 7  # callers do in-place work on what they get
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize, flatten,
                                                      data_dir=tmp_path / "data")
    scale = 255.0 if normalize else 1.0
    np.testing.assert_array_equal(np.round(x_train.reshape(5, 28, 28) * scale),
                                  written["train_img"])
    np.testing.assert_array_equal(t_train, written["train_label"])
    np.testing.assert_array_equal(t_test, written["test_label"])
    assert not np.shares_memory(first[1][0], x_test)


def test_search_order(tmp_path, monkeypatch):
    # Each place holds a different number of training images, which tells them apart.
    make_mnist_files(tmp_path / "arg", n_train=4)
    make_mnist_files(tmp_path / "env" / "mnist", n_train=6)
    make_mnist_files(user_cache(tmp_path), n_train=8)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env"))

    def n_train(**kwargs):
        return len(load_mnist(**kwargs)[0][0])

    assert n_train(data_dir=tmp_path / "arg") == 4
    assert n_train(data_dir=str(tmp_path / "arg")) == 4
    assert n_train() == 6
    monkeypatch.delenv("FASTCONV_DATA")
    assert n_train() == 8


def test_a_folder_counts_only_with_all_four_files(tmp_path):
    make_mnist_files(tmp_path / "partial", n_train=4)
    (tmp_path / "partial" / FILE_NAMES[2]).unlink()
    make_mnist_files(user_cache(tmp_path), n_train=8)
    assert len(load_mnist(data_dir=tmp_path / "partial")[0][0]) == 8


def test_fashion_mnist_uses_its_own_folder(tmp_path, monkeypatch):
    make_mnist_files(tmp_path / "env" / "mnist", n_train=4, seed=1)
    written = make_mnist_files(tmp_path / "env" / "fashion-mnist", n_train=6, seed=2)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env"))
    (x_train, t_train), _ = load_fashion_mnist(normalize=False, flatten=False)
    np.testing.assert_array_equal(x_train[:, 0], written["train_img"])
    np.testing.assert_array_equal(t_train, written["train_label"])
    assert len(load_mnist()[0][0]) == 4


def test_unknown_dataset_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="cifar"):
        load_mnist(dataset="cifar")


# ---- cache --------------------------------------------------------------------------------

def test_memo_serves_a_reload_without_parsing(tmp_path, monkeypatch):
    make_mnist_files(tmp_path / "data")
    expected = load_mnist(data_dir=tmp_path / "data")
    forbid_parsing(monkeypatch)
    (tmp_path / "data" / mnist_loader._CACHE_NAME).unlink()  # only the memo is left
    again = load_mnist(data_dir=tmp_path / "data")
    np.testing.assert_array_equal(again[0][0], expected[0][0])


def test_npz_cache_serves_a_new_process_without_parsing(tmp_path, monkeypatch):
    make_mnist_files(tmp_path / "data")
    expected = load_mnist(normalize=False, data_dir=tmp_path / "data")
    assert (tmp_path / "data" / mnist_loader._CACHE_NAME).is_file()
    monkeypatch.setattr(mnist_loader, "_memo", {})  # as in a fresh process
    forbid_parsing(monkeypatch)
    again = load_mnist(normalize=False, data_dir=tmp_path / "data")
    for old, new in zip([*expected[0], *expected[1]], [*again[0], *again[1]]):
        np.testing.assert_array_equal(old, new)
    with np.load(tmp_path / "data" / mnist_loader._CACHE_NAME, allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)


@pytest.mark.parametrize("fresh_process", [False, True])
def test_changed_source_file_invalidates_the_cache(tmp_path, monkeypatch, fresh_process):
    make_mnist_files(tmp_path / "data")
    load_mnist(data_dir=tmp_path / "data")
    new_labels = np.array([9, 9, 9, 9, 9], dtype=np.uint8)
    labels_path = tmp_path / "data" / mnist_loader.key_file["train_label"]
    write_idx(labels_path, new_labels)
    # An explicit mtime, since a rewrite within one clock tick could keep the old one.
    stat = labels_path.stat()
    os.utime(labels_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    if fresh_process:
        monkeypatch.setattr(mnist_loader, "_memo", {})
    (_, t_train), _ = load_mnist(data_dir=tmp_path / "data")
    np.testing.assert_array_equal(t_train, new_labels)


def test_corrupt_cache_is_ignored_and_replaced(tmp_path, monkeypatch):
    written = make_mnist_files(tmp_path / "data")
    load_mnist(data_dir=tmp_path / "data")
    cache_path = tmp_path / "data" / mnist_loader._CACHE_NAME
    cache_path.write_bytes(b"PK\x03\x04 not really a zip file")
    monkeypatch.setattr(mnist_loader, "_memo", {})
    (_, t_train), _ = load_mnist(data_dir=tmp_path / "data")
    np.testing.assert_array_equal(t_train, written["train_label"])
    monkeypatch.setattr(mnist_loader, "_memo", {})
    forbid_parsing(monkeypatch)  # the rewritten cache is good again
    load_mnist(data_dir=tmp_path / "data")


def test_read_only_data_folder_caches_in_user_cache_dir(tmp_path, monkeypatch):
    data = tmp_path / "env" / "mnist"
    make_mnist_files(data)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env"))
    data.chmod(0o555)
    try:
        load_mnist()
        assert sorted(p.name for p in data.iterdir()) == sorted(FILE_NAMES)
        cached = list(user_cache(tmp_path).glob("*.npz"))
        assert len(cached) == 1
        monkeypatch.setattr(mnist_loader, "_memo", {})
        forbid_parsing(monkeypatch)
        load_mnist()
    finally:
        data.chmod(0o755)


# ---- malformed data -----------------------------------------------------------------------

def _bad_magic(folder):
    path = folder / mnist_loader.key_file["test_img"]
    path.write_bytes(gzip.compress(b"\x08\x03" + gzip.decompress(path.read_bytes())[2:]))
    return path


def _truncated_gzip(folder):
    path = folder / mnist_loader.key_file["train_img"]
    path.write_bytes(path.read_bytes()[:-20])
    return path


def _trailing_bytes(folder):
    path = folder / mnist_loader.key_file["test_label"]
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()) + b"\x01"))
    return path


def _flipped_bytes_longer(folder):
    # what bytes flipped inside a gzip stream can decompress to: more data than the header
    # declares, with a CRC that fails at the stream's end
    path = folder / mnist_loader.key_file["test_img"]
    packed = bytearray(gzip.compress(gzip.decompress(path.read_bytes()) + b"\x01" * 64))
    packed[-8] ^= 0xFF
    path.write_bytes(bytes(packed))
    return path


def _wrong_image_dims(folder):
    path = folder / mnist_loader.key_file["train_img"]
    write_idx(path, np.zeros((5, 27, 29), dtype=np.uint8))
    return path


def _labels_not_1d(folder):
    path = folder / mnist_loader.key_file["test_label"]
    write_idx(path, np.zeros((3, 1), dtype=np.uint8))
    return path


def _label_out_of_range(folder):
    path = folder / mnist_loader.key_file["train_label"]
    write_idx(path, np.array([1, 2, 10, 3, 4], dtype=np.uint8))
    return path


def _count_mismatch(folder):
    path = folder / mnist_loader.key_file["test_label"]
    write_idx(path, np.array([1, 2], dtype=np.uint8))
    return path


@pytest.mark.parametrize("corrupt", [_bad_magic, _truncated_gzip, _trailing_bytes,
                                     _wrong_image_dims, _labels_not_1d, _label_out_of_range,
                                     _count_mismatch])
def test_malformed_files_raise_naming_the_file(tmp_path, corrupt):
    make_mnist_files(tmp_path / "data")
    broken = corrupt(tmp_path / "data")
    with pytest.raises(ValueError, match=broken.name) as info:
        load_mnist(data_dir=tmp_path / "data")
    assert isinstance(info.value, (IDXFormatError, MNISTFormatError))
    assert str(broken) in str(info.value)


def test_a_gzip_whose_crc_fails_is_called_corrupt_even_past_the_declared_data(tmp_path):
    make_mnist_files(tmp_path / "data")
    _flipped_bytes_longer(tmp_path / "data")
    with pytest.raises(IDXFormatError, match=r"corrupt gzip data \(CRC check failed"):
        load_mnist(data_dir=tmp_path / "data")


# ---- missing data and downloads ------------------------------------------------------------

def test_nothing_anywhere_raises_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env"))
    with pytest.raises(MNISTNotFoundError) as info:
        load_mnist(data_dir=tmp_path / "arg")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for expected in [*FILE_NAMES, str(tmp_path / "arg"), str(tmp_path / "env" / "mnist"),
                     str(user_cache(tmp_path)), "data_dir=", "FASTCONV_DATA",
                     "tests do not use the network"]:
        assert expected in message
    assert not list(user_cache(tmp_path).iterdir())


def test_the_error_says_what_stands_in_a_folders_or_a_files_place(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "a-file"))
    folders = tmp_path / "folders"
    for name in FILE_NAMES:
        (folders / name).mkdir(parents=True)
    with pytest.raises(MNISTNotFoundError) as info:
        load_mnist(data_dir=folders, download=False)
    message = str(info.value)
    assert f"[$FASTCONV_DATA/mnist; {tmp_path / 'a-file'} is not a folder]" in message
    assert f"{FILE_NAMES[0]} (not a regular file)" in message


def test_download_false_never_fetches(tmp_path, monkeypatch):
    fetched = []
    monkeypatch.setattr(downloads, "fetch", lambda url, out, *a, **k: fetched.append(url))
    with pytest.raises(MNISTNotFoundError, match="download=False"):
        load_mnist(download=False)
    assert fetched == []


def fake_server(files, log, bad_urls=(), fail_half_way=()):
    """A stand-in for downloads.fetch serving ``files`` (name -> bytes) from any mirror.

    URLs in ``bad_urls`` answer with wrong bytes; those in ``fail_half_way`` write half the
    file and then drop the connection.
    """
    def fetch(url, out, *args, **kwargs):
        log.append(url)
        content = files[url.rsplit("/", 1)[-1]]
        if url in fail_half_way:
            out.write(content[:len(content) // 2])
            raise ConnectionResetError("connection dropped half-way")
        out.write(b"garbage" + content if url in bad_urls else content)
    return fetch


def publish(tmp_path, monkeypatch, dataset="mnist"):
    """Fake official files for ``dataset``: returns name -> bytes, with checksums to match."""
    source = tmp_path / "published"
    written = make_mnist_files(source, seed=3)
    files = {name: (source / name).read_bytes() for name in FILE_NAMES}
    checksums = {name: hashlib.md5(content).hexdigest() for name, content in files.items()}
    monkeypatch.setitem(downloads.MD5, dataset, checksums)
    monkeypatch.setitem(downloads.SIZES, dataset, {name: len(content)
                                                   for name, content in files.items()})
    return files, written


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_good_download_lands_and_loads(tmp_path, monkeypatch, dataset):
    files, written = publish(tmp_path, monkeypatch, dataset)
    log = []
    monkeypatch.setattr(downloads, "fetch", fake_server(files, log))
    (_, t_train), (x_test, _) = load_mnist(normalize=False, flatten=False, dataset=dataset)
    np.testing.assert_array_equal(t_train, written["train_label"])
    np.testing.assert_array_equal(x_test[:, 0], written["test_img"])
    mirror = downloads.MIRRORS[dataset][0]
    assert log == [mirror + name for name in FILE_NAMES]
    folder = user_cache(tmp_path, dataset)
    for name in FILE_NAMES:
        assert (folder / name).read_bytes() == files[name]
    assert not [p for p in folder.iterdir() if p.name.endswith((".part", ".tmp"))]


def test_wrong_checksum_leaves_nothing_and_tries_next_mirror(tmp_path, monkeypatch):
    files, written = publish(tmp_path, monkeypatch)
    first, second = downloads.MIRRORS["mnist"]
    log = []
    bad = {first + name for name in FILE_NAMES}
    monkeypatch.setattr(downloads, "fetch", fake_server(files, log, bad_urls=bad))
    (_, t_train), _ = load_mnist()
    np.testing.assert_array_equal(t_train, written["train_label"])
    assert log == [mirror + name for name in FILE_NAMES for mirror in (first, second)]
    folder = user_cache(tmp_path)
    assert not [p for p in folder.iterdir() if p.name.endswith((".part", ".tmp"))]


def test_wrong_checksum_everywhere_leaves_no_file(tmp_path, monkeypatch):
    files, _ = publish(tmp_path, monkeypatch)
    bad = {mirror + name for mirror in downloads.MIRRORS["mnist"] for name in FILE_NAMES}
    monkeypatch.setattr(downloads, "fetch", fake_server(files, [], bad_urls=bad))
    with pytest.raises(MNISTNotFoundError, match="MD5"):
        load_mnist()
    assert list(user_cache(tmp_path).iterdir()) == []


def test_download_failing_half_way_leaves_no_file(tmp_path, monkeypatch):
    files, _ = publish(tmp_path, monkeypatch)
    dropped = {mirror + name for mirror in downloads.MIRRORS["mnist"] for name in FILE_NAMES}
    monkeypatch.setattr(downloads, "fetch", fake_server(files, [], fail_half_way=dropped))
    with pytest.raises(MNISTNotFoundError, match="half-way"):
        load_mnist()
    assert list(user_cache(tmp_path).iterdir()) == []


def test_only_missing_files_are_downloaded(tmp_path, monkeypatch):
    files, _ = publish(tmp_path, monkeypatch)
    folder = user_cache(tmp_path)
    folder.mkdir(parents=True)
    (folder / FILE_NAMES[0]).write_bytes(files[FILE_NAMES[0]])
    log = []
    monkeypatch.setattr(downloads, "fetch", fake_server(files, log))
    load_mnist()
    assert [url.rsplit("/", 1)[-1] for url in log] == FILE_NAMES[1:]


def test_real_fetch_downloads_through_urllib(tmp_path, monkeypatch):
    # A file:// mirror exercises urllib, the progress bar and the checksum without a network.
    files, written = publish(tmp_path, monkeypatch)
    monkeypatch.setitem(downloads.MIRRORS, "mnist", ((tmp_path / "published").as_uri() + "/",))
    monkeypatch.setattr(downloads, "fetch", REAL_FETCH)
    (_, t_train), _ = load_mnist()
    np.testing.assert_array_equal(t_train, written["train_label"])
    assert (user_cache(tmp_path) / FILE_NAMES[0]).read_bytes() == files[FILE_NAMES[0]]


# ---- the real MNIST files -----------------------------------------------------------------

def _real_mnist_present():
    return bool(REAL_DATA_ROOT) and all(
        (Path(REAL_DATA_ROOT) / "mnist" / name).is_file() for name in FILE_NAMES)


def real_mnist_test(test):
    """Mark a test as reading the real MNIST through $FASTCONV_DATA and a shared parsed cache."""
    test = pytest.mark.usefixtures("real_env")(test)
    test = pytest.mark.skipif(not _real_mnist_present(),
                              reason="set FASTCONV_DATA to a folder whose mnist/ holds MNIST")(test)
    return pytest.mark.mnist(test)


@pytest.fixture(scope="module")
def real_cache_root(tmp_path_factory):
    """A user cache dir holding the parsed real MNIST, made by one real (timed) parse."""
    root = tmp_path_factory.mktemp("real-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FASTCONV_DATA", REAL_DATA_ROOT)
        patch.setenv("XDG_CACHE_HOME", str(root))
        patch.setattr(mnist_loader, "_memo", {})
        start = time.perf_counter()
        load_mnist(verbose=True)
        print(f"first load of real MNIST: {time.perf_counter() - start:.2f} s")
    return root


@pytest.fixture
def real_env(real_cache_root, monkeypatch):
    monkeypatch.setenv("FASTCONV_DATA", REAL_DATA_ROOT)
    monkeypatch.setenv("XDG_CACHE_HOME", str(real_cache_root))


@real_mnist_test
def test_real_shapes_and_labels():
    (x_train, t_train), (x_test, t_test) = load_mnist()
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert t_train.shape == (60000,) and t_test.shape == (10000,)
    assert list(t_test[:5]) == [7, 2, 1, 0, 4]
    assert list(np.bincount(t_train)) == [5923, 6742, 5958, 6131, 5842,
                                          5421, 5918, 6265, 5851, 5949]
    assert list(np.bincount(t_test)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert x_train.max() == 1.0 and x_train.min() == 0.0


@real_mnist_test
def test_real_unflattened_one_hot():
    (x_train, t_train), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True)
    assert x_train.shape == (60000, 1, 28, 28) and x_train.dtype == np.uint8
    assert t_train.shape == (60000, 10) and t_train.dtype == np.float64


@real_mnist_test
def test_real_cached_reload_skips_parsing(monkeypatch):
    # the module fixture's parse left an .npz in the user cache; it must serve this load
    # (how fast that is belongs in the benchmarks, not in a test on a shared machine)
    forbid_parsing(monkeypatch)
    (_, t_train), _ = load_mnist()
    assert len(t_train) == 60000


# ---- content-keyed cache (issue 15, item 7) ------------------------------------------------

@pytest.mark.parametrize("fresh_process", [False, True])
def test_replacement_with_same_size_and_mtime_is_seen(tmp_path, monkeypatch, fresh_process):
    # cp -p and rsync -t keep the size and the mtime: only the content tells the files apart
    written = make_mnist_files(tmp_path / "data")
    labels_path = tmp_path / "data" / mnist_loader.key_file["train_label"]
    labels_path.write_bytes(idx_bytes(written["train_label"]))  # raw IDX: sizes are exact
    load_mnist(data_dir=tmp_path / "data")
    before = labels_path.stat()
    new_labels = (written["train_label"] + 1) % 10
    labels_path.write_bytes(idx_bytes(new_labels))
    os.utime(labels_path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = labels_path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    if fresh_process:
        monkeypatch.setattr(mnist_loader, "_memo", {})
    (_, t_train), _ = load_mnist(data_dir=tmp_path / "data")
    np.testing.assert_array_equal(t_train, new_labels)


@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_cache_file_follows_the_umask(tmp_path, umask):
    make_mnist_files(tmp_path / "data")
    old = os.umask(umask)
    try:
        load_mnist(data_dir=tmp_path / "data")
    finally:
        os.umask(old)
    mode = (tmp_path / "data" / mnist_loader._CACHE_NAME).stat().st_mode & 0o777
    assert mode == 0o666 & ~umask


# ---- IDX bombs ------------------------------------------------------------------------------

def gzip_stream(pieces):
    """gzip the byte strings that ``pieces`` yields, without holding them all at once."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    return b"".join([*(compressor.compress(piece) for piece in pieces), compressor.flush()])


def test_gzip_bomb_stops_past_the_declared_size(tmp_path):
    make_mnist_files(tmp_path / "data")
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 5, 28, 28)
    zeros = bytes(1 << 20)
    bomb = gzip_stream([header, bytes(5 * 784), *([zeros] * 96)])  # 96 MB of trailing zeros
    path = tmp_path / "data" / mnist_loader.key_file["train_img"]
    path.write_bytes(bomb)
    assert len(bomb) < 200_000
    peak, error = peak_bytes(lambda: load_mnist(data_dir=tmp_path / "data"))
    assert peak < 4_000_000, f"{peak} bytes traced for a {len(bomb)}-byte file"
    assert isinstance(error, IDXFormatError) and "trailing" in str(error), error


def test_idx_header_declaring_too_much_is_refused_before_decompressing(tmp_path):
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**24, 28, 28)
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(gzip_stream([header, bytes(1 << 20)]))
    with pytest.raises(IDXFormatError, match="at most 1000 are expected"):
        read_idx(path, max_items=1000)


# ---- downloads from a local HTTP server ------------------------------------------------------

class _MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves /<behaviour>/<name> from ``server.files``; every loop is bounded."""

    def do_GET(self):  # noqa: N802 - the name http.server calls
        behaviour, _, name = self.path.strip("/").partition("/")
        content = self.server.files.get(name)
        if content is None:
            self.send_error(404)
            return
        try:
            if behaviour == "good":
                self._headers(len(content))
                self.wfile.write(content)
            elif behaviour == "slow":  # one byte every 0.1 s: 30 s for 300 bytes
                self._headers(len(content))
                for byte in content[:300]:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            elif behaviour in ("huge", "undeclared"):  # 512 MB announced or none; 16 MB sent
                self._headers(512 << 20 if behaviour == "huge" else None)
                for _ in range(256):
                    self.wfile.write(bytes(1 << 16))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _headers(self, length):
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Connection", "close")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local HTTP mirror of freshly published files; returns (url, files, written)."""
    source = tmp_path / "published"
    written = make_mnist_files(source, n_train=600, seed=5)  # labels: several hundred bytes
    files = {name: (source / name).read_bytes() for name in FILE_NAMES}
    monkeypatch.setitem(downloads.MD5, "mnist", {name: hashlib.md5(content).hexdigest()
                                                 for name, content in files.items()})
    monkeypatch.setitem(downloads.SIZES, "mnist", {name: len(content)
                                                   for name, content in files.items()})
    monkeypatch.setattr(downloads, "fetch", REAL_FETCH)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MirrorHandler)
    server.daemon_threads = True
    server.files = files
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", files, written
    finally:
        server.shutdown()
        server.server_close()


def use_mirror(monkeypatch, url):
    monkeypatch.setitem(downloads.MIRRORS, "mnist", (url + "/",))


def test_http_download_lands_with_the_umask(tmp_path, monkeypatch, mirror):
    url, files, written = mirror
    use_mirror(monkeypatch, url + "/good")
    old = os.umask(0o002)
    try:
        (_, t_train), _ = load_mnist()
    finally:
        os.umask(old)
    np.testing.assert_array_equal(t_train, written["train_label"])
    folder = user_cache(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*FILE_NAMES,
                                                               mnist_loader._CACHE_NAME])
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o664, path.name


def test_download_has_one_overall_deadline(tmp_path, monkeypatch, mirror):
    url, _, _ = mirror
    use_mirror(monkeypatch, url + "/slow")
    monkeypatch.setattr(downloads, "DEADLINE", 1.0)
    monkeypatch.setattr(downloads, "READ_TIMEOUT", 0.5)
    start = time.monotonic()
    with pytest.raises(MNISTNotFoundError, match="not complete after"):
        load_mnist()
    # each byte comes well within the read timeout: only an overall deadline stops it
    assert time.monotonic() - start < 15
    assert list(user_cache(tmp_path).iterdir()) == []


@pytest.mark.parametrize("behaviour, message", [("huge", "announced"),
                                                ("undeclared", "more than the")])
def test_oversized_download_is_cut_off(tmp_path, monkeypatch, mirror, behaviour, message):
    url, _, _ = mirror
    use_mirror(monkeypatch, url + "/" + behaviour)
    with pytest.raises(MNISTNotFoundError, match=message):
        load_mnist()
    assert list(user_cache(tmp_path).iterdir()) == []


def test_killed_runs_leftovers_are_removed(tmp_path, monkeypatch):
    files, _ = publish(tmp_path, monkeypatch)
    monkeypatch.setattr(downloads, "fetch", fake_server(files, []))
    folder = user_cache(tmp_path)
    folder.mkdir(parents=True)
    stale = [folder / f".{FILE_NAMES[0]}.1a2b3c4d5e6f.tmp", folder / f"{FILE_NAMES[1]}.x7y8.part"]
    fresh = folder / f".{FILE_NAMES[2]}.4d5e6f7a8b9c.tmp"  # another process may be writing it
    long_ago = time.time() - 2 * downloads.STALE_AFTER
    for path in [*stale, fresh]:
        path.write_bytes(b"half a download")
    for path in stale:
        os.utime(path, (long_ago, long_ago))
    load_mnist()
    assert [path.exists() for path in stale] == [False, False]
    assert fresh.exists()


# ---- the book's mnist.pkl -----------------------------------------------------------------

def write_book_pickle(path, arrays, protocol=pickle.HIGHEST_PROTOCOL):
    """A mnist.pkl as the book's dataset/mnist.py writes it: flattened uint8 images."""
    book = {key: (value.reshape(len(value), -1) if key.endswith("_img") else value)
            for key, value in arrays.items()}
    with open(path, "wb") as f:
        pickle.dump(book, f, protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_book_mnist_pickle_loads_from_data_dir(tmp_path, protocol):
    rng = np.random.default_rng(7)
    arrays = {"train_img": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              "train_label": rng.integers(0, 10, 6, dtype=np.uint8),
              "test_img": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
              "test_label": rng.integers(0, 10, 2, dtype=np.uint8)}
    (tmp_path / "dataset").mkdir()
    write_book_pickle(tmp_path / "dataset" / "mnist.pkl", arrays, protocol)
    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=False, flatten=False,
                                                      data_dir=tmp_path / "dataset")
    np.testing.assert_array_equal(x_train[:, 0], arrays["train_img"])
    np.testing.assert_array_equal(t_test, arrays["test_label"])
    assert os.listdir(tmp_path / "dataset") == ["mnist.pkl"]  # nothing written beside it


def test_gz_files_win_over_mnist_pickle(tmp_path):
    written = make_mnist_files(tmp_path / "dataset", n_train=4)
    write_book_pickle(tmp_path / "dataset" / "mnist.pkl",
                      make_mnist_files(tmp_path / "other", n_train=9))
    (_, t_train), _ = load_mnist(data_dir=tmp_path / "dataset")
    np.testing.assert_array_equal(t_train, written["train_label"])


class _CallsSystem:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def _bad_book_pickles(arrays):
    good = {key: (value.reshape(len(value), -1) if key.endswith("_img") else value)
            for key, value in arrays.items()}
    return {
        "object array": dict(good, train_label=np.array([1, "a", None] * 2, dtype=object)),
        "global": dict(good, test_img=_CallsSystem()),
        "float images": dict(good, train_img=good["train_img"].astype(np.float64)),
        "missing key": {key: value for key, value in good.items() if key != "test_label"},
    }


@pytest.mark.parametrize("case", ["object array", "global", "float images", "missing key"])
def test_hostile_mnist_pickle_is_refused(tmp_path, case):
    arrays = make_mnist_files(tmp_path / "source", n_train=6)
    (tmp_path / "dataset").mkdir()
    path = tmp_path / "dataset" / "mnist.pkl"
    with open(path, "wb") as f:
        pickle.dump(_bad_book_pickles(arrays)[case], f)
    with pytest.raises(MNISTFormatError, match="mnist.pkl"):
        load_mnist(data_dir=tmp_path / "dataset")


def test_oversized_mnist_pickle_is_refused_unread(tmp_path):
    (tmp_path / "dataset").mkdir()
    path = tmp_path / "dataset" / "mnist.pkl"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # a sparse 1 GB file: nothing to read, only its size
    peak, error = peak_bytes(lambda: load_mnist(data_dir=tmp_path / "dataset"))
    assert peak < 1_000_000
    assert isinstance(error, MNISTFormatError) and "bytes" in str(error), error
