"""Helpers of test_zero_change: fixture trees with a tiny fake MNIST, and running scripts."""
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"
TIMEOUT = 300  # seconds: a hang fails the test, not the suite (slow shared machines)
_NUMBER = re.compile(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?")


def write_fake_mnist(folder, train=40, test=12, seed=0):
    """Four MNIST-format .gz files with random digits: enough for a few training steps."""
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.randint(0, 256, size=(count, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=count).astype(np.uint8)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, count, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, count) + labels.tobytes())


def make_tree(tmp_path, name, data_folder):
    """A copy of fixtures/<name> in tmp_path, with fake MNIST files in <data_folder>/."""
    tree = tmp_path / name
    shutil.copytree(FIXTURES / name, tree, ignore=shutil.ignore_patterns("__pycache__"))
    write_fake_mnist(tree / data_folder)
    return tree


def clean_env(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "FASTCONV_ZERO_CHANGE", "FASTCONV_MODE", "FASTCONV_PLOTS",
                        "MPLBACKEND", "DISPLAY", "WAYLAND_DISPLAY")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # fastconv's parsed-data cache
    env["FASTCONV_DATA"] = str(tmp_path / "no-data-here")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    return env


def run(args, cwd, tmp_path, runner=False, extra_env=None):
    """``python [-m fastconv --report] args`` in cwd; a CompletedProcess with text output."""
    command = [sys.executable] + (["-m", "fastconv", "--report"] if runner else []) + list(args)
    env = clean_env(tmp_path)
    env.update(extra_env or {})
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)


def assert_same_output(plain, served, rtol=1e-9):
    """Same lines and words; numbers equal to rounding (float64 sums in another order)."""
    plain_lines, served_lines = plain.splitlines(), served.splitlines()
    assert len(plain_lines) == len(served_lines), (plain, served)
    for a, b in zip(plain_lines, served_lines):
        assert _NUMBER.sub("#", a) == _NUMBER.sub("#", b), (a, b)
        numbers_a = [float(x) for x in _NUMBER.findall(a)]
        numbers_b = [float(x) for x in _NUMBER.findall(b)]
        np.testing.assert_allclose(numbers_b, numbers_a, rtol=rtol, atol=1e-12, err_msg=a)


def report_line(report, name):
    """The report's line about ``name`` (stripped), the first one that names it."""
    for line in report.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] in ("served", "user's") and words[1] == name:
            return line.strip()
    raise AssertionError(f"{name} not in the report:\n{report}")
