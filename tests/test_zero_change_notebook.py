"""A notebook run with ``%load_ext fastconv`` as its first cell gives the outputs it gives
without it (nbclient, a kernel in a subprocess; the fixture's own book-layout tree)."""
import re

import pytest

from zero_change_helpers import TIMEOUT, clean_env, make_tree

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

CELLS = [
    "import sys, os\nsys.path.append(os.pardir)\nimport numpy as np\n"
    "from dataset.mnist import load_mnist\nfrom two_layer_net import TwoLayerNet",
    "np.random.seed(2)\n(x_train, t_train), (x_test, t_test) = load_mnist()\n"
    "net = TwoLayerNet(784, 12, 10)\nfor _ in range(5):\n"
    "    batch = np.random.choice(len(x_train), 6)\n"
    "    grads = net.gradient(x_train[batch], t_train[batch])\n"
    "    for key in grads:\n        net.params[key] -= 0.3 * grads[key]\n"
    "    print('%.12f' % net.loss(x_train[batch], t_train[batch]))",
    "net.accuracy(x_test, t_test)",
    "sys.modules['common.layers'].Affine.__module__.split('.')[0]",
]


def _execute(folder, cells, env_tmp, monkeypatch):
    for key, value in clean_env(env_tmp).items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()
    return [_text(cell) for cell in notebook.cells[-len(CELLS):]]


def _text(cell):
    parts = []
    for output in cell.outputs:
        parts.append(output.get("text") or output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_load_ext_gives_the_notebooks_outputs(tmp_path, monkeypatch):
    tree = make_tree(tmp_path, "book_tree", "dataset")
    plain = _execute(tree / "ch05", CELLS, tmp_path, monkeypatch)
    served = _execute(tree / "ch05", ["%load_ext fastconv"] + CELLS, tmp_path, monkeypatch)
    number = re.compile(r"\d+\.\d+")
    assert number.sub("#", "".join(plain[:-1])) == number.sub("#", "".join(served[:-1]))
    for a, b in zip(number.findall("".join(plain)), number.findall("".join(served))):
        assert float(a) == pytest.approx(float(b), rel=1e-9)
    assert plain[-1] == "'common'" and served[-1] == "'fastconv'"
