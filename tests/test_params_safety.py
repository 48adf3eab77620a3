"""Parameter files from an untrusted source, and saves that fail half-way (issue 15, items 2, 4, 7).

A crash (SIGSEGV) or a memory blow-up would take the test process down with it, so those cases
run in a subprocess with a timeout, or are measured with tracemalloc, which sees NumPy's array
allocations.
"""
import collections
import io
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from conftest import peak_bytes
from fastconv.nets import TwoLayerNet
from fastconv.nets import params_io
from fastconv.nets.params_io import read_params

SHAPES = {"W1": (6, 7), "b1": (7,), "W2": (7, 3), "b2": (3,)}


def small_net():
    return TwoLayerNet(input_size=6, hidden_size=7, output_size=3, dtype=np.float64)


def book_style_params(dtype=np.float64, seed=0):
    """What the book's params.pkl holds: a plain dict of name -> ndarray."""
    rng = np.random.default_rng(seed)
    return {key: rng.standard_normal(shape).astype(dtype) for key, shape in SHAPES.items()}


def write_pickle(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def snapshot(net):
    return {key: value.copy() for key, value in net.params.items()}


def assert_unchanged(net, before):
    for key, value in before.items():
        np.testing.assert_array_equal(net.params[key], value)


# ---- forged arrays: object dtypes and pointers -------------------------------------------------

class _Forged:
    """Pickles as ``ndarray(shape, dtype, buffer=...)``: a constructor the allow-list names."""

    def __init__(self, dtype, buffer=b"AAAAAAAA", shape=(1,)):
        self.args = (shape, dtype, buffer)

    def __reduce__(self):
        return np.ndarray, self.args


class _Reconstructed:
    """Pickles as NumPy's own array recipe, with a chosen (dtype, raw data) state."""

    def __init__(self, dtype, data):
        self.state = (1, (1,), np.dtype(dtype), False, data)

    def __reduce__(self):
        return (np.ndarray.__reduce__(np.zeros(1))[0], (np.ndarray, (0,), b"b"), self.state)


FORGED = {  # each W1 beside genuine other parameters, so that loading reaches it
    # the file: a pointer 0x4141... inside a one-element object array, in a list
    "object array in a list": [_Forged(np.dtype("O"))],
    "object array": _Forged(np.dtype("O")),
    "object dtype rebuilt": _Reconstructed("O", b"AAAAAAAA"),
    "record dtype": _Reconstructed([("a", "O")], b"AAAAAAAA"),
    "short buffer": _Reconstructed("f8", b"AAAA"),
}


def test_forged_arrays_give_an_error_not_a_crash(tmp_path):
    paths = []
    for label, payload in FORGED.items():
        for protocol in (2, 4):
            name = label.replace(" ", "-") + f"-{protocol}.pkl"
            paths.append(str(write_pickle(tmp_path / name, dict(book_style_params(), W1=payload),
                                          protocol)))
    # Today's loaders dereference the forged pointer: run them where a SIGSEGV cannot hurt.
    script = textwrap.dedent(f"""
        import numpy as np
        from fastconv.nets import TwoLayerNet
        from fastconv.nets.params_io import read_params
        net = TwoLayerNet(input_size=6, hidden_size=7, output_size=3, dtype=np.float64)
        for path in {paths!r}:
            for load in (net.load_params, read_params):
                try:
                    result = load(path)
                except Exception as exc:
                    print("refused:", type(exc).__name__, exc, flush=True)
                else:
                    kinds = {{k: np.asarray(v).dtype for k, v in (result or {{}}).items()}}
                    print("accepted:", path, kinds, flush=True)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, (f"the process died ({done.returncode}) after\n{done.stdout}"
                                  f"{done.stderr[-2000:]}")
    lines = done.stdout.splitlines()
    assert len(lines) == 2 * len(paths), done.stdout
    for line, path in zip(lines, [p for p in paths for _ in range(2)]):
        assert line.startswith("refused:") and path in line, line


def test_unknown_globals_are_refused_before_running(tmp_path):
    class CallsNumpyLoad:
        def __reduce__(self):
            return np.load, (str(tmp_path / "other.npy"),)
    path = write_pickle(tmp_path / "p.pkl", {"W1": CallsNumpyLoad()})
    with pytest.raises(pickle.UnpicklingError, match="forbidden global numpy.*load"):
        read_params(path)


@pytest.mark.parametrize("value", [np.array(["ab", "cd"]), np.zeros(2, dtype=complex),
                                   np.zeros(2, dtype="M8[s]"), np.zeros(2, dtype=[("a", "f8")])],
                         ids=["str", "complex", "datetime", "record"])
@pytest.mark.parametrize("suffix", [".pkl", ".npz"])
def test_non_numeric_arrays_are_refused(tmp_path, value, suffix):
    path = tmp_path / ("p" + suffix)
    if suffix == ".npz":
        np.savez(path, W1=value)
    else:
        write_pickle(path, {"W1": value})
    with pytest.raises((TypeError, pickle.UnpicklingError), match="p" + suffix):
        read_params(path)


def test_a_refused_value_is_placed_by_the_text_before_it(tmp_path):
    # a list where an array belongs: the opcode scan refuses it before any key is known
    path = tmp_path / "p.pkl"
    write_pickle(path, {"W1": np.zeros((2, 2)), "b1": [0.0, 0.0]})
    with pytest.raises(pickle.UnpicklingError, match=r"pickle opcode EMPTY_LIST at byte \d+ "
                                                     r"\(the last text before it: 'b1'\)"):
        read_params(path)


def test_read_params_returns_only_plain_numeric_arrays(tmp_path):
    values = collections.OrderedDict(
        f=np.arange(6.0).reshape(2, 3), fortran=np.asfortranarray(np.arange(6).reshape(2, 3)),
        big_endian=np.arange(3, dtype=">i4"), flags=np.array([True, False]),
        half=np.ones(2, np.float16), u8=np.arange(3, dtype=np.uint8),
        scalar=np.float32(2.5), number=3, real=0.5, truth=True, empty=np.zeros((0, 4)))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        path = write_pickle(tmp_path / f"p{protocol}.pkl", values, protocol)
        loaded = read_params(path)
        assert list(loaded) == list(values)
        for key, value in values.items():
            got = loaded[key]
            assert type(got) is np.ndarray and got.dtype.kind in "biuf", key
            assert got.flags.owndata and got.flags.writeable and got.dtype.isnative, key
            np.testing.assert_array_equal(got, value)
            assert got.dtype == np.asarray(value).dtype.newbyteorder("="), key


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_book_style_pickles_load(tmp_path, protocol, dtype):
    # The book's ch07/params.pkl and ch08/deep_convnet_params.pkl are float64 dicts pickled
    # with protocol 4, ch03/sample_weight.pkl a float32 one with protocol 3.
    params = book_style_params(dtype)
    path = write_pickle(tmp_path / "params.pkl", params, protocol)
    net = small_net()
    net.load_params(path)
    for key, value in params.items():
        np.testing.assert_array_equal(net.params[key], value.astype(np.float64))


# ---- memory bounded by the network's size ----------------------------------------------------

def test_nested_list_pickle_allocates_nothing_big(tmp_path):
    nested = [0.5] * 10
    for _ in range(6):
        nested = [nested] * 10  # 10**7 numbers, each level one memo reference: a tiny file
    path = write_pickle(tmp_path / "lists.pkl", dict(book_style_params(), W1=nested))
    assert path.stat().st_size < 4096
    net = small_net()
    before = snapshot(net)
    peak, error = peak_bytes(lambda: net.load_params(path))
    assert peak < 2_000_000, f"{peak} bytes traced for a {path.stat().st_size}-byte file"
    assert isinstance(error, pickle.UnpicklingError) and "lists.pkl" in str(error), error
    assert_unchanged(net, before)


def write_npz_with_big_member(path, name, size, params):
    """An .npz holding ``params`` and a member ``name`` of ``size`` zero bytes, deflated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (size // 8,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key, value in params.items():
            with archive.open(key + ".npy", "w") as member:
                np.lib.format.write_array(member, value)
        with archive.open(name, "w", force_zip64=True) as member:
            member.write(header.getvalue())
            zeros = bytes(1 << 20)
            for _ in range(size >> 20):
                member.write(zeros)


@pytest.mark.parametrize("name", ["extra.npy", "W1.npy"], ids=["unexpected key", "oversized"])
def test_npz_bomb_is_refused_before_inflating(tmp_path, name):
    params = book_style_params()
    if name == "W1.npy":
        del params["W1"]
    path = tmp_path / "bomb.npz"
    write_npz_with_big_member(path, name, 48 << 20, params)
    assert path.stat().st_size < 200_000
    net = small_net()
    before = snapshot(net)
    peak, error = peak_bytes(lambda: net.load_params(path))
    assert peak < 2_000_000, f"{peak} bytes traced for a {path.stat().st_size}-byte file"
    assert isinstance(error, ValueError) and name[:-4] in str(error), error
    assert_unchanged(net, before)


def test_npz_header_shape_is_checked_before_reading_the_data(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, **dict(book_style_params(), W2=np.zeros((3, 7))))
    with pytest.raises(ValueError, match=r"'W2'.*expected \(7, 3\), got \(3, 7\)"):
        small_net().load_params(path)


def test_oversized_pickle_is_refused_from_its_size(tmp_path):
    params = book_style_params()
    params["W1"] = np.zeros((600, 700))  # the right key, 10**4 times the bytes
    path = write_pickle(tmp_path / "big.pkl", params)
    peak, error = peak_bytes(lambda: small_net().load_params(path))
    assert peak < path.stat().st_size / 4
    assert isinstance(error, ValueError) and "big.pkl" in str(error) and "bytes" in str(error)


def test_opcode_flood_is_refused(tmp_path):
    # Within the byte budget, but far more opcodes than a dict of four arrays needs.
    body = b"".join([b"\x80\x02}q\x00(X\x02\x00\x00\x00W1", b"N0" * 4000, b"Nu."])
    path = tmp_path / "flood.pkl"
    path.write_bytes(body)
    with pytest.raises(pickle.UnpicklingError, match="opcodes"):
        small_net().load_params(path)


# ---- names and formats ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["p.NPZ", "p.Npz", "weights", "p.pkl"])
def test_save_writes_exactly_the_name_given(tmp_path, name):
    src = small_net()
    src.save_params(str(tmp_path / name))
    assert os.listdir(tmp_path) == [name]
    is_zip = (tmp_path / name).read_bytes()[:2] == b"PK"
    assert is_zip == name.lower().endswith(".npz")
    dst = TwoLayerNet(input_size=6, hidden_size=7, output_size=3, dtype=np.float64,
                      weight_init_std=1.0)
    dst.load_params(tmp_path / name)
    for key, value in src.params.items():
        np.testing.assert_array_equal(dst.params[key], value)


def test_format_is_read_from_the_content(tmp_path):
    params = book_style_params()
    with open(tmp_path / "renamed.pkl", "wb") as f:
        np.savez(f, **params)  # an .npz under a pickle's name
    write_pickle(tmp_path / "renamed.npz", params)  # and the other way round
    for name in ("renamed.pkl", "renamed.npz"):
        loaded = read_params(tmp_path / name)
        for key, value in params.items():
            np.testing.assert_array_equal(loaded[key], value)


# ---- saving atomically ---------------------------------------------------------------------

def test_exception_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    net = small_net()
    for name in ("p.pkl", "p.npz"):
        path = tmp_path / name
        net.save_params(path)
        good = path.read_bytes()

        def fail_half_way(*args, **kwargs):
            next(arg for arg in args if hasattr(arg, "write")).write(b"\x80\x04partial")
            raise KeyboardInterrupt

        monkeypatch.setattr(params_io.pickle, "dump", fail_half_way)
        monkeypatch.setattr(params_io.np, "savez", fail_half_way)
        with pytest.raises(KeyboardInterrupt):
            net.save_params(path)
        monkeypatch.undo()
        assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["p.npz", "p.pkl"]


@pytest.mark.parametrize("name", ["p.pkl", "p.npz"])
@pytest.mark.parametrize("value", [np.array([None] * 7), np.array(["a"] * 7), np.ones(7, complex),
                                   [0.0] * 7, "0"])
def test_a_value_that_would_not_load_again_is_refused_and_keeps_the_previous_file(
        tmp_path, name, value):
    # the loader refuses object, text and complex arrays and lists: such a save would have
    # replaced a good file with one that no load_params can read
    net = small_net()
    path = tmp_path / name
    net.save_params(path)
    good = path.read_bytes()
    net.params["b1"] = value
    with pytest.raises(TypeError, match=r"params\['b1'\] must be a bool, integer or float"):
        net.save_params(path)
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == [name]


def test_numbers_and_numpy_scalars_save_and_load_again(tmp_path):
    net = small_net()
    for value in (1.5, 2, True, np.float32(0.25), np.int64(3)):
        net.params["b1"] = value
        net.save_params(tmp_path / "p.pkl")
        assert read_params(tmp_path / "p.pkl")["b1"] == value


@pytest.mark.parametrize("name", ["p.pkl", "p.npz"])
def test_full_disk_keeps_the_previous_file(tmp_path, name):
    # RLIMIT_FSIZE caps the size of any file the child writes: a disk that fills half-way.
    path = tmp_path / name
    small_net().save_params(path)
    good = path.read_bytes()
    script = textwrap.dedent(f"""
        import resource, signal
        import numpy as np
        from fastconv.nets import TwoLayerNet
        net = TwoLayerNet(input_size=600, hidden_size=70, output_size=3)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            net.save_params({str(path)!r})
        except OSError as exc:
            print("failed:", exc)
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("failed:"), done.stdout + done.stderr
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == [name]


def test_saved_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        small_net().save_params(tmp_path / "p.pkl")
    finally:
        os.umask(old)
    assert (tmp_path / "p.pkl").stat().st_mode & 0o777 == 0o640


def test_npz_bomb_without_a_network_is_refused_from_the_directory(tmp_path):
    path = tmp_path / "bomb.npz"
    write_npz_with_big_member(path, "extra.npy", 48 << 20, book_style_params())
    peak, error = peak_bytes(lambda: read_params(path))
    assert peak < 2_000_000, f"{peak} bytes traced for a {path.stat().st_size}-byte file"
    assert isinstance(error, ValueError) and "inflates to" in str(error), error


# ---- memory bounded by the file's size, without a network ------------------------------------

def test_one_array_under_many_names_is_built_once(tmp_path):
    array = np.arange(1 << 14, dtype=np.float64)  # 128 KB; the pickler writes it once
    path = write_pickle(tmp_path / "same.pkl", {f"k{i}": array for i in range(200)})
    assert path.stat().st_size < 2 * array.nbytes
    peak, error = peak_bytes(lambda: read_params(path))
    assert error is None and peak < 8 * path.stat().st_size, (peak, error)
    loaded = read_params(path)
    assert all(value is loaded["k0"] for value in loaded.values())  # shared, as pickled
    np.testing.assert_array_equal(loaded["k199"], array)


class _SharedBytes:
    """Pickles as numpy's _frombuffer over one bytes object that every instance shares."""
    data = bytes(1 << 17)

    def __reduce__(self):
        return (_numpy_frombuffer(), (self.data, np.dtype(np.float64), (1 << 14,), "C"))


def _numpy_frombuffer():
    """The function NumPy's own array pickles call to rebuild an array from bytes."""
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # NumPy 1.x
        from numpy.core.numeric import _frombuffer
    return _frombuffer


def test_many_arrays_over_one_byte_string_are_refused_before_building(tmp_path):
    # distinct records, each naming the same 128 KB of bytes through the pickle's memo
    path = write_pickle(tmp_path / "amplified.pkl", {f"k{i}": _SharedBytes() for i in range(200)})
    assert path.stat().st_size < 2 * len(_SharedBytes.data)
    peak, error = peak_bytes(lambda: read_params(path))
    assert isinstance(error, ValueError) and "more bytes than the file" in str(error), error
    assert peak < 8 * path.stat().st_size, f"{peak} bytes traced"
