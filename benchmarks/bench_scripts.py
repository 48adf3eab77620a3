"""asv: a book-style training script run unchanged, as ``python SCRIPT`` and as
``python -m fastconv SCRIPT`` (the zero-change mode, ``fastconv.zerochange``).

In setup, a temporary folder gets the ``common/`` package of the tests' book-style fixture
(tests/fixtures/book_tree: a student's copy of the book's layers, most of which fastconv
serves) and the script below in ``ch05/`` (``sys.path.append(os.pardir)``, ``from
common.layers import ...``): a two-layer network trained for 100 steps on random data.
Each timed call is a whole process, interpreter start-up and imports included, as a user
sees it; setup runs it once first so Numba's on-disk cache is warm and compilation is never
timed. Skipped (asv shows n/a) where ``fastconv.zerochange`` does not exist yet.
"""
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

from ._threads import THREADS

COMMON = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests",
                      "fixtures", "book_tree", "common")

SCRIPT = '''import os
import sys

sys.path.append(os.pardir)
import numpy as np

from common.layers import Affine, Relu, SoftmaxWithLoss

rng = np.random.default_rng(0)
x, t = rng.random((1000, 784)), rng.integers(0, 10, 1000)
W1, b1 = 0.01 * rng.standard_normal((784, 100)), np.zeros(100)
W2, b2 = 0.01 * rng.standard_normal((100, 10)), np.zeros(10)
layers = [Affine(W1, b1), Relu(), Affine(W2, b2)]
last = SoftmaxWithLoss()
for step in range(100):
    rows = rng.choice(1000, 100)
    h = x[rows]
    for layer in layers:
        h = layer.forward(h)
    loss = last.forward(h, t[rows])
    d = last.backward()
    for layer in reversed(layers):
        d = layer.backward(d)
    for affine in (layers[0], layers[2]):
        affine.W -= 0.1 * affine.dW
        affine.b -= 0.1 * affine.db
print(f"loss {loss:.4f}")
'''

RUNNERS = {"python": [], "python -m fastconv": ["-m", "fastconv"]}


class BookScript:
    """Wall time of one whole run of the script (a new process each time)."""

    params = (list(RUNNERS), THREADS)
    param_names = ["runner", "threads"]
    number = 1
    repeat = (3, 5, 60.0)
    warmup_time = 0
    timeout = 300

    def setup(self, runner, threads):
        if importlib.util.find_spec("fastconv.zerochange") is None:
            raise NotImplementedError("fastconv.zerochange is not in this commit")
        self.tmp = tempfile.TemporaryDirectory(prefix="fastconv-bench-")
        root = self.tmp.name
        shutil.copytree(COMMON, os.path.join(root, "common"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.cwd = os.path.join(root, "ch05")
        os.makedirs(self.cwd)
        with open(os.path.join(self.cwd, "train.py"), "w") as f:
            f.write(SCRIPT)
        # the child's thread pools are pinned before it starts, as compare.py does
        self.env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS"):
            self.env[var] = str(threads)
        self.argv = [sys.executable, *RUNNERS[runner], "train.py"]
        self.time_run(runner, threads)  # fills Numba's on-disk cache

    def teardown(self, runner, threads):
        if hasattr(self, "tmp"):
            self.tmp.cleanup()

    def time_run(self, runner, threads):
        subprocess.run(self.argv, cwd=self.cwd, env=self.env, check=True,
                       stdout=subprocess.DEVNULL, timeout=240)
