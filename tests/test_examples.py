"""The scripts in examples/ run end to end on a tiny synthetic MNIST.

Each script runs as a subprocess with the test's interpreter and settings small enough for
a few seconds (all of them together well under a minute once Numba's on-disk cache is warm),
writes its figures into a temporary folder and prints its timing. One test, marked
``mnist``, runs the main job on the real data when ``FASTCONV_DATA`` points at it.
"""
import inspect
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
    "hyperparameter_optimization.py": (["--quick", "--trials", "2", "--epochs", "2"],
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
    assert f"Output folder: {out_dir}" in result.stdout  # --out is used as it is
    assert "mode=parity" in result.stdout  # each example says which mode it runs in
    # "(4.1 trials/min)" is a rate, not a count: no digit or point may come before the 1
    singular_plural = re.search(r"(?<![\d.])1 (epochs|iterations|trials|networks|images)\b",
                                result.stdout)
    assert singular_plural is None, singular_plural
    if script not in ("hyperparameter_optimization.py", "sweep_convnet.py"):  # per trial
        assert re.search(r"^epoch", result.stdout, re.MULTILINE), "no per-epoch line"
    assert "plt.show" not in (EXAMPLES / script).read_text()


def test_every_script_is_covered():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SCRIPTS)


def test_quick_numpy_float64(tiny_mnist, tmp_path):
    """--quick alone is enough, and the numpy backend and float64 work too."""
    result = run_example("train_neuralnet.py", ["--quick", "--fast", "--backend", "numpy",
                                                "--dtype", "float64", "--data-dir",
                                                str(tiny_mnist), "--out", str(tmp_path)])
    check_output(result, tmp_path, ["train_neuralnet.png"])
    assert "mode=fast (float32, dtype overridden)" in result.stdout
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
    assert "6,000 training images and 10,000 test images" in result.stdout
    accuracy = float(re.search(r"Final test accuracy: ([0-9.]+)", result.stdout).group(1))
    assert accuracy > 0.5, result.stdout  # 60 Adam steps: far above chance (0.1)


# ---- the run folder, the clock and the messages, tested in this process --------------------

@pytest.fixture
def common(monkeypatch, tmp_path):
    """examples/_common.py, imported here, writing its run folders under tmp_path."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import _common
    monkeypatch.setattr(_common, "OUT_ROOT", tmp_path / "out")
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / "train_neuralnet.py")])
    return _common


def test_two_runs_in_the_same_second_get_two_folders(common, monkeypatch):
    class FrozenClock:
        @staticmethod
        def now():
            import datetime
            return datetime.datetime(2026, 12, 1, 5, 30, 0)
    monkeypatch.setattr(common, "datetime", FrozenClock)
    outs = []
    for _ in range(3):
        args = common.parse_args(common.make_parser("test"), defaults={"epochs": 1}, argv=[])
        outs.append(args.out)
    assert [p.name for p in outs] == ["20261201-053000", "20261201-053000-2",
                                      "20261201-053000-3"]
    assert all(p.parent == common.OUT_ROOT / "train_neuralnet" and p.is_dir() for p in outs)


def test_a_given_out_holding_this_scripts_files_is_refused(common, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "train_neuralnet.png").write_bytes(b"an earlier run")
    with pytest.raises(SystemExit) as stop:
        common.parse_args(common.make_parser("test"), defaults={"epochs": 1},
                          argv=["--out", str(out)], outputs=["train_neuralnet.png"])
    assert stop.value.code == 2
    assert "already holds train_neuralnet.png" in capsys.readouterr().err
    assert (out / "train_neuralnet.png").read_bytes() == b"an earlier run"


def test_missing_data_names_the_scripts_option(common, tmp_path, monkeypatch):
    import fastconv.datasets.download as downloads

    def no_network(*args, **kwargs):
        raise OSError("no network in this test")
    monkeypatch.setattr(downloads, "download", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    args = common.parse_args(common.make_parser("test"), defaults={"epochs": 1},
                             argv=["--data-dir", str(tmp_path / "empty"), "--out",
                                   str(tmp_path / "run")])
    with pytest.raises(SystemExit) as stop:
        common.load_data(args)
    message = str(stop.value.code)
    assert "--data-dir" in message and "data_dir=" not in message, message


def test_checkpoint_options_follow_the_trainer(common, tmp_path, capsys):
    parser = common.make_parser("test", checkpoint=True)
    argv = ["--checkpoint", "--out", str(tmp_path / "run")]
    from fastconv.trainer import Trainer
    if "checkpoint" in inspect.signature(Trainer).parameters:
        args = common.parse_args(parser, defaults={"epochs": 1}, argv=argv)
        assert common.trainer_options(args) == {
            "checkpoint": str(tmp_path / "run" / common.CHECKPOINT_NAME)}
    else:
        with pytest.raises(SystemExit):
            common.parse_args(parser, defaults={"epochs": 1}, argv=argv)
        assert "Trainer takes checkpoint=" in capsys.readouterr().err


def test_resume_picks_the_latest_run_with_a_checkpoint(common):
    root = common.OUT_ROOT / "train_neuralnet"
    for name, has_checkpoint in (("20261201-050000", True), ("20261201-060000", True),
                                 ("20261201-070000", False)):
        (root / name).mkdir(parents=True)
        if has_checkpoint:
            (root / name / common.CHECKPOINT_NAME).write_bytes(b"")
    os.utime(root / "20261201-050000" / common.CHECKPOINT_NAME, (1, 1))
    assert common.latest_run_with_checkpoint(common.OUT_ROOT, "train_neuralnet") == \
        root / "20261201-060000"


def test_resume_gives_the_resumed_runs_options_again(common):
    # without them, --resume met the first run's checkpoint with the book's defaults, and the
    # Trainer refused it ("setting 'train_size' is 6000 in the checkpoint, 60000 here")
    def parsed(argv):
        parser = common.make_parser("test", checkpoint=True)
        return common.parse_args(parser, defaults={"epochs": 20}, argv=argv)
    first = parsed(["--checkpoint", "--epochs", "3", "--seed", "5"])
    (first.out / common.CHECKPOINT_NAME).write_bytes(b"")  # the run's first save
    again = parsed(["--resume"])
    assert (again.out, again.epochs, again.seed) == (first.out, 3, 5)
    assert again.checkpoint_path == first.checkpoint_path
    more = parsed(["--resume", "--epochs", "6"])  # an option given now wins
    assert (more.out, more.epochs, more.seed) == (first.out, 6, 5)


def test_resume_refuses_an_out_without_a_checkpoint(common, tmp_path, capsys):
    # it started a new run there, writing over the earlier run's files
    def parsed(argv):
        parser = common.make_parser("test", checkpoint=True)
        return common.parse_args(parser, defaults={"epochs": 20}, argv=argv,
                                 outputs=("params.pkl",))
    run = tmp_path / "run"
    run.mkdir()
    (run / "params.pkl").write_bytes(b"an earlier run's")
    for folder in (run, tmp_path / "none"):
        with pytest.raises(SystemExit):
            parsed(["--resume", "--out", str(folder)])
        assert "there is no checkpoint" in capsys.readouterr().err
    assert (run / "params.pkl").read_bytes() == b"an earlier run's"
    assert sorted(tmp_path.iterdir()) == [run]
    (run / common.CHECKPOINT_NAME).write_bytes(b"")  # with one, it continues the run
    assert parsed(["--resume", "--out", str(run)]).out == run


def test_wall_time_counts_from_process_start():
    code = ("import time; time.sleep(1.5); import sys; sys.path.insert(0, sys.argv[1]); "
            "import _common; print(_common.seconds_since_start())")
    result = subprocess.run([sys.executable, "-c", code, str(EXAMPLES)], capture_output=True,
                            text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.split()[-1]) >= 1.5


@pytest.mark.parametrize("n, text", [(1, "1 epoch"), (2, "2 epochs"), (0, "0 epochs"),
                                     (1000, "1,000 epochs")])
def test_count_words(common, n, text):
    assert common.count(n, "epoch") == text


def test_zoom_panel_only_where_the_curves_crowd(common):
    crowded = {"train": [0.1, 0.9, 0.95, 0.97, 0.98, 0.985],
               "test": [0.1, 0.89, 0.94, 0.96, 0.97, 0.975]}
    assert common.crowded_tail(crowded) == 1
    spread = {"train": [0.1, 0.3, 0.5, 0.7, 0.9, 1.0], "test": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
    assert common.crowded_tail(spread) is None
    assert common.crowded_tail({"train": [0.1, 0.9, 0.95]}) is None  # too short to zoom


def test_figures_are_written_whole(common, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    args = common.parse_args(common.make_parser("test"), defaults={"epochs": 1},
                             argv=["--out", str(tmp_path / "run")])
    fig, _ = plt.subplots()

    def fail(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(fig, "savefig", fail)
    with pytest.raises(RuntimeError):
        common.save_figure(fig, args, "plot.png")
    assert list((tmp_path / "run").iterdir()) == []  # no partial file, no temporary left
