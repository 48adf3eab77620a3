"""A notebook run with ``%load_ext fastconv`` as its first cell gives the outputs it gives
without it: ``tools/book_notebooks.py`` (nbclient, a kernel in a subprocess) on notebooks of
our own in the fixture's book-layout tree, and that tool's comparison on its own."""

import pytest

from zero_change_helpers import TIMEOUT, clean_env, make_tree

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")


@pytest.fixture(scope="module")
def book_notebooks(load_script):
    return load_script("tools/book_notebooks.py")


SAME = [  # the book's notebooks' way: the folder's parent on sys.path, classes in cells
    "import sys, os\nsys.path.append(os.pardir)\nsys.path.append(os.path.join(os.pardir, 'ch05'))\n"
    "import numpy as np\nfrom dataset.mnist import load_mnist\nfrom two_layer_net import TwoLayerNet",
    "print(np.random.rand(2))  # the tool seeds both sides the same",
    "(x_train, t_train), (x_test, t_test) = load_mnist()\n"
    "net = TwoLayerNet(784, 12, 10)\nfor _ in range(5):\n"
    "    batch = np.random.choice(len(x_train), 6)\n"
    "    grads = net.gradient(x_train[batch], t_train[batch])\n"
    "    for key in grads:\n        net.params[key] -= 0.3 * grads[key]\n"
    "    print('%.12f' % net.loss(x_train[batch], t_train[batch]))",
    "net.accuracy(x_test, t_test)",
    "import no_such_module_here  # fails the same way on both sides",
]
DIFFERS = [
    "import sys, os\nsys.path.append(os.pardir)\nimport common.layers",
    "sys.modules['common.layers'].Affine.__module__.split('.')[0]",
]


def _book(tmp_path):
    tree = make_tree(tmp_path, "book_tree", "dataset")
    (tree / "notebooks").mkdir()
    for name, cells in (("same", SAME), ("differs", DIFFERS)):
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nbformat.write(notebook, tree / "notebooks" / f"{name}.ipynb")
    return tree


def test_load_ext_gives_the_notebooks_outputs_and_a_difference_fails(book_notebooks, tmp_path,
                                                                     monkeypatch, capsys):
    for key, value in clean_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MPLBACKEND", "Agg")  # restored afterwards; the tool sets it
    tree = _book(tmp_path)
    status = book_notebooks.main(["--book", str(tree), "--timeout", str(TIMEOUT)])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| notebook")}
    assert status == 1, out
    assert rows["same"].startswith("| same | 5 | yes |"), out
    assert "cell 1 results: \"'common'\" vs \"'fastconv'\"" in rows["differs"], out
    assert sorted(p.name for p in (tree / "dataset").iterdir() if p.suffix != ".py") == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz"]  # the book's tree is only copied: no cache written there


def _cell(stdout="", error=None, images=0, result=None, stderr=""):
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout),
               nbformat.v4.new_output("stream", name="stderr", text=stderr)]
    if error:
        outputs.append(nbformat.v4.new_output("error", ename=error, evalue="",
                                              traceback=[f"{error} at {stdout}"]))
    outputs += [nbformat.v4.new_output("display_data", data={"image/png": "", "text/plain":
                                                             "<Figure>"})] * images
    if result is not None:
        outputs.append(nbformat.v4.new_output("execute_result", data={"text/plain": result},
                                              execution_count=1))
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = outputs
    return cell


def test_comparison_rules(book_notebooks):
    differences = book_notebooks.differences
    assert differences([_cell("loss 0.1\n", result="array([1.5,  2. ])")],
                       [_cell("loss 0.10000000000000002\n", result="array([1.5, 2. ])")]) == []
    assert differences([_cell("a", "FileNotFoundError")], [_cell("b", "FileNotFoundError")]) \
        == ["cell 0 stdout: 'a' vs 'b'"]  # the same error, whatever its message
    assert differences([_cell(error="FileNotFoundError")], [_cell(error="TypeError")]) \
        == ["cell 0 errors: ['FileNotFoundError'] vs ['TypeError']"]
    assert differences([_cell(images=2)], [_cell(images=1)]) == ["cell 0 images: 2 vs 1"]
    assert differences([_cell("0.1000001")], [_cell("0.1")]) == ["cell 0 stdout: '0.1000001' vs '0.1'"]
    warning = "{}:57: RuntimeWarning: overflow encountered in {}\n  out = f(x)\n"
    book, ours = warning.format("/b/common/layers.py", "dot"), warning.format("/k/gemm.py", "matmul")
    assert differences([_cell(stderr=book)], [_cell(stderr=ours)]) == []
    assert differences([_cell(stderr=book)], [_cell()]) == []  # noted, not compared:
    assert book_notebooks.fp_warning_note([_cell(stderr=book)], [_cell()]) \
        == "NumPy warnings (not compared): plain overflow; fastconv none"
    viewer = "xdg-open: no method available for opening '/tmp/{}.PNG'\n"
    assert differences([_cell(stderr=viewer.format("tmp_h59rhbx"))],
                       [_cell(stderr=viewer.format("tmpiazvqjwx"))]) == []
    other = "/tmp/ipykernel_{}/12.py:8: UserWarning: No artists\n  plt.legend()\n"
    assert differences([_cell(stderr=other.format(17))], [_cell(stderr=other.format(18))]) == []
    assert differences([_cell(stderr=other.format(17))], [_cell()])
    check = [_cell("W1:4.6077589445859907e-10")], [_cell("W1:4.607824085227827e-10")]
    assert differences(*check) and not differences(*check, atols=[1e-10])


def test_reduce_substitutes_the_listed_constants_and_says_so(book_notebooks):
    said = []
    cells = book_notebooks.reduce_cells("ch05", ["x = 1", "iters_num = 10000  # ..."], said.append)
    assert cells == ["x = 1", "iters_num = 200  # ..."]
    assert said == ["ch05 cell 1: 'iters_num = 10000' -> 'iters_num = 200'"]
    assert book_notebooks.reduce_cells("ch04b", ["iters_num = 10000"], said.append) \
        == ["iters_num = 10000"]
    said.clear()
    book_notebooks.reduce_cells("ch05", ["iters_num = 500"], said.append)
    assert said == ["ch05: 'iters_num = 10000' not found, not reduced"]
