"""The scripts in examples/ run end to end on a tiny synthetic MNIST.

Each script runs as a subprocess with the test's interpreter and settings small enough for
a few seconds (all of them together well under a minute once Numba's on-disk cache is warm),
writes its figures into a temporary folder and prints its timing. One test, marked
``mnist``, runs the main job on the real data when ``FASTCONV_DATA`` points at it.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastconv.datasets import write_idx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 300  # seconds per script: far above the few seconds each needs, so only a hang fails

# script -> (tiny arguments, files it must write into --out)
SCRIPTS = {
    # --epochs on an iteration-based script: ceil(1 * 300 / 100) = 3 iterations
    "train_neuralnet.py": (["--epochs", "1", "--train-size", "300"], ["train_neuralnet.png"]),
    "optimizer_compare_mnist.py": (["--iters", "3", "--train-size", "500", "--rmsprop"],
                                   ["optimizer_compare_mnist.png"]),
    "weight_init_compare.py": (["--iters", "3", "--train-size", "500"],
                               ["weight_init_compare.png"]),
    "batch_norm_test.py": (["--epochs", "2", "--train-size", "200", "--scales", "2"],
                           ["batch_norm_test.png"]),
    "overfit_weight_decay.py": (["--epochs", "2", "--train-size", "200"],
                                ["overfit_weight_decay.png"]),
    "overfit_dropout.py": (["--epochs", "2", "--train-size", "200"], ["overfit_dropout.png"]),
    "hyperparameter_optimization.py": (["--quick", "--trials", "2", "--epochs", "1"],
                                       ["hyperparameter_optimization.png"]),
    "sweep_convnet.py": (["--quick", "--trials", "2", "--train-size", "300"],
                         ["sweep_convnet.png"]),
    "train_convnet.py": (["--epochs", "1", "--train-size", "500"],
                         ["train_convnet.png", "params.pkl"]),
    "train_deepnet.py": (["--epochs", "1", "--train-size", "200", "--test-size", "100"],
                         ["train_deepnet.png", "deep_convnet_params.pkl"]),
}


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    """600 training and 200 test images of noise, with digit labels, in the four MNIST files."""
    folder = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 600), ("t10k", 200)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz",
                  rng.integers(0, 10, size=n).astype(np.uint8))
    return folder


def run_example(script, args, timeout=TIMEOUT):
    env = dict(os.environ)
    # Idle OpenMP threads sleep instead of spinning: on a 2-core machine shared with other
    # jobs, spinning workers starve each other and the tiny kernels here crawl.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=EXAMPLES.parent)


def check_output(result, out_dir, files):
    assert result.returncode == 0, (f"exit code {result.returncode}\n--- stdout\n"
                                    f"{result.stdout}\n--- stderr\n{result.stderr}")
    assert "Total wall time:" in result.stdout
    assert re.search(r"\d+ images/s", result.stdout), result.stdout
    for name in files:
        path = out_dir / name
        assert path.is_file(), f"{name} not written; stdout:\n{result.stdout}"
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_MAGIC, f"{name} is not a PNG"


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_example_runs(script, tiny_mnist, tmp_path):
    args, files = SCRIPTS[script]
    out_dir = tmp_path / "out" / "nested"  # also checks that --out is created
    result = run_example(script, [*args, "--data-dir", str(tiny_mnist), "--out", str(out_dir),
                                  "--seed", "0"])
    check_output(result, out_dir, files)
    if script not in ("hyperparameter_optimization.py", "sweep_convnet.py"):  # per trial
        assert re.search(r"^epoch", result.stdout, re.MULTILINE), "no per-epoch line"
    assert "plt.show" not in (EXAMPLES / script).read_text()


def test_every_script_is_covered():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SCRIPTS)


def test_quick_numpy_float64(tiny_mnist, tmp_path):
    """--quick alone is enough, and the numpy backend and float64 work too."""
    result = run_example("train_neuralnet.py", ["--quick", "--backend", "numpy",
                                                "--dtype", "float64", "--data-dir",
                                                str(tiny_mnist), "--out", str(tmp_path)])
    check_output(result, tmp_path, ["train_neuralnet.png"])
    assert "backend=numpy, dtype=float64" in result.stdout
    assert "20 iterations" in result.stdout


def test_epochs_and_iters_exclude_each_other(tiny_mnist, tmp_path):
    result = run_example("weight_init_compare.py", ["--epochs", "1", "--iters", "3",
                                                    "--data-dir", str(tiny_mnist),
                                                    "--out", str(tmp_path)])
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def _real_mnist_dir():
    root = os.environ.get("FASTCONV_DATA")
    if not root:
        return None
    folder = Path(root) / "mnist"
    return folder if (folder / "train-images-idx3-ubyte.gz").is_file() else None


@pytest.mark.mnist
@pytest.mark.skipif(_real_mnist_dir() is None,
                    reason="set FASTCONV_DATA to a folder whose mnist/ holds MNIST")
def test_train_convnet_real_mnist(tmp_path):
    result = run_example("train_convnet.py", ["--epochs", "1", "--train-size", "6000",
                                              "--seed", "0", "--out", str(tmp_path)],
                         timeout=1800)
    check_output(result, tmp_path, ["train_convnet.png", "params.pkl"])
    assert "6000 training and 10000 test images" in result.stdout
    accuracy = float(re.search(r"Final test accuracy: ([0-9.]+)", result.stdout).group(1))
    assert accuracy > 0.5, result.stdout  # 60 Adam steps: far above chance (0.1)
