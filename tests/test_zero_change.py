"""Zero-change mode: fixture trees in the book's and the course fork's layouts, run plainly and
through ``python -m fastconv`` / ``%load_ext fastconv``; the rule on in-memory modules."""
import signal
import subprocess
import sys
import types

import numpy as np
import pytest

from fastconv.zerochange import rules
from fastconv.zerochange.compare import signature_difference
from zero_change_helpers import (assert_same_output, clean_env, make_tree, report_line,
                                 run)


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zc")
    return make_tree(tmp, "book_tree", "dataset"), tmp


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zc-course")
    return make_tree(tmp, "course_tree", "data"), tmp


def _plain_and_served(tree, tmp, chapter, script, *args):
    plain = run([script, *args], tree / chapter, tmp)
    served = run([script, *args], tree / chapter, tmp, runner=True)
    assert plain.returncode == 0, plain.stderr
    assert served.returncode == 0, served.stderr
    assert_same_output(plain.stdout, served.stdout)
    return served


def test_ch05_net_and_layers_are_served_with_the_plain_run_numbers(book):
    served = _plain_and_served(*book, "ch05", "train_neuralnet.py")
    net = report_line(served.stderr, "TwoLayerNet")
    # served, or kept for a behaviour the probes saw differ (fastconv's accuracy returned a
    # Python float where the book's gives np.float64, when this test was written)
    assert "by fastconv.two_layer_net.TwoLayerNet" in net or "behaviour" in net, net
    assert "by fastconv.layers.Affine" in report_line(served.stderr, "Affine")
    assert "reads " in report_line(served.stderr, "load_mnist")
    # the student's gradient takes a step argument: a changed signature keeps theirs
    assert "extra parameter 'h'" in report_line(served.stderr, "numerical_gradient")


def test_ch04_sigmoid_net_is_told_apart_from_ch05s(book):
    served = _plain_and_served(*book, "ch04", "train_neuralnet.py", "5")
    line = report_line(served.stderr, "TwoLayerNet")
    if "two_layer_net_ch04" in line and line.startswith("served"):
        return  # this fastconv has ch04's net, and the probes picked it
    assert line.startswith("user's") and "behaviour" in line, line


def test_star_import_and_float_params_keep_working(book):
    served = _plain_and_served(*book, "ch06", "optimizer_naive.py")
    assert "SGD" in served.stdout and report_line(served.stderr, "Adam")


def test_edited_and_own_layers_stay_the_users_and_plots_are_saved(book, tmp_path):
    tree, tmp = book
    plain = run(["dropout_and_plot.py", "3"], tree / "ch06", tmp)
    served = run(["dropout_and_plot.py", "3"], tree / "ch06", tmp, runner=True)
    assert plain.returncode == served.returncode == 3  # the script's own exit code
    assert_same_output(plain.stdout, served.stdout)
    dropout = report_line(served.stderr, "Dropout")
    assert dropout.startswith("user's") and "behaviour" in dropout
    assert "LeakyRelu" in served.stderr and "fastconv has no such name" in served.stderr
    png = tree / "ch06" / "fastconv-plots" / "dropout_and_plot-1.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert str(png) in served.stderr


def test_a_failing_script_fails_as_in_a_plain_run(book):
    tree, tmp = book
    (tree / "ch06" / "broken.py").write_text(
        "import sys, os\nsys.path.append(os.pardir)\nfrom common.layers import Affine\n"
        "def inner():\n    raise ZeroDivisionError('from the script')\ninner()\n")
    plain = run(["broken.py"], tree / "ch06", tmp)
    served = run(["broken.py"], tree / "ch06", tmp, runner=True)
    assert plain.returncode == served.returncode == 1
    tail = plain.stderr.strip().splitlines()[-3:]
    assert served.stderr.split("fastconv zero-change report")[0].strip().splitlines()[-3:] == tail
    assert "runpy" not in served.stderr


def test_course_fork_lesson_runs_unchanged_on_its_own_api(course):
    served = _plain_and_served(*course, "lesson_2", "train_l2.py")
    report = served.stderr
    assert "parameter 1 is 'd'" in report_line(report, "cross_entropy_error")
    assert "d_relu" in report and "fastconv has no such name" in report
    assert "use_batchnorm" in report_line(report, "MultiLayerNet")
    assert report_line(report, "Affine").startswith("served")
    assert report_line(report, "load_mnist").startswith("served")
    # fastconv's loader read the lesson's own data folder (and left its parsed cache there)
    assert (course[0] / "data" / "fastconv-cache.npz").is_file()


def test_course_lesson_at_the_courses_sizes_keeps_its_numbers(course):
    # the lesson timed in docs/zero-change.md, cut to a few iterations
    served = _plain_and_served(*course, "lesson_2", "train_weight_decay.py", "3")
    assert "iteration 0 loss" in served.stdout
    assert report_line(served.stderr, "Affine").startswith("served")


def test_course_cnn_lesson_runs_on_served_conv_and_pool_with_its_own_numbers(course):
    # the lesson's own SimpleConvNet on the fork's Convolution, Pooling and im2col (timed in
    # docs/zero-change.md), cut to a few iterations; its label-first loss stays the user's
    served = _plain_and_served(*course, "lesson_3", "train_simple_convnet.py", "3")
    assert "iteration 0 loss" in served.stdout and "test acc" in served.stdout
    for name in ("Convolution", "Pooling", "im2col", "col2im", "Affine"):
        assert report_line(served.stderr, name).startswith("served"), name
    assert report_line(served.stderr, "SoftmaxWithLoss").startswith("user's")


def test_workers_follow_the_mode(book):
    tree, tmp = book
    served = run(["--fast", "workers.py", "spawn", "fork", "forkserver"], tree / "ch06", tmp,
                 runner=True)
    assert served.returncode == 0, served.stderr
    lines = served.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["spawn", "fork", "forkserver"]
    for line in lines:
        assert line.split()[1:] == ["fastconv.layers.linear", "fast"], line


def test_ipython_load_ext_serves_the_same_numbers(book):
    pytest.importorskip("IPython")
    tree, tmp = book
    plain = run(["train_neuralnet.py"], tree / "ch05", tmp)
    code = ("ip = get_ipython(); ip.run_line_magic('load_ext', 'fastconv'); "
            "ip.run_line_magic('run', 'train_neuralnet.py'); "
            "import fastconv.zerochange as z, sys; print(z.report(), file=sys.stderr)")
    served = run(["-m", "IPython", "--quick", "--no-banner", "--colors=NoColor", "-c", code],
                 tree / "ch05", tmp)
    assert served.returncode == 0, served.stderr
    assert_same_output(plain.stdout, served.stdout)
    assert report_line(served.stderr, "Affine").startswith("served")


# ---- the rule, on modules built in memory -----------------------------------------------

def _module(name, source):
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    sys.modules[name] = module
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    finally:
        del sys.modules[name]
    return module


_BOOK_LIKE = """
import numpy as np
def softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
def relu(x):
    return np.maximum(x, 0) * (1 + 1e-3 * np.random.rand())   # draws and changes results
def sigmoid(x):
    return 1 / (1 + np.exp(-x))
def uses_softmax(x):
    return softmax(x)
"""


def test_rule_serves_equivalents_and_rebinds_the_users_globals():
    module = _module("zc_probe_functions", _BOOK_LIKE)
    state = np.random.get_state()
    report = rules.serve(module, ("fastconv.functions",))
    after = np.random.get_state()
    import fastconv.functions as ours
    assert module.softmax is ours.softmax and module.sigmoid is ours.sigmoid
    assert module.uses_softmax.__globals__["softmax"] is ours.softmax
    assert "relu" in report.kept and module.relu is not ours.relu
    assert report.served["softmax"] == "fastconv.functions.softmax"
    assert all(np.array_equal(a, b) for a, b in zip(state[1:2], after[1:2]))  # RNG untouched
    assert state[2] == after[2]


def test_rule_keeps_a_changed_formula_and_a_label_first_signature():
    module = _module("zc_probe_changed", """
import numpy as np
def sigmoid(x):
    return 1 / (1 + np.exp(-2 * x))
def cross_entropy_error(d, y):
    return -np.sum(d * np.log(y + 1e-7)) / y.shape[0]
def relu(x):
    np.random.rand()  # same results, but the script's later draws would shift
    return np.maximum(0, x)
""")
    report = rules.serve(module, ("fastconv.functions",))
    assert report.served == {}
    assert "behaviour" in report.kept["sigmoid"]
    assert report.kept["cross_entropy_error"].startswith("signature")
    assert "random numbers" in report.kept["relu"]


def test_rule_keeps_a_function_that_prints_and_its_prints_stay_out_of_the_output(capsys):
    # a print a learner put in to watch a function would vanish if fastconv's served it
    module = _module("zc_probe_prints", """
import numpy as np
def sigmoid(x):
    print("sigmoid of", np.shape(x))
    return 1 / (1 + np.exp(-x))
def relu(x):
    return np.maximum(0, x)
""")
    report = rules.serve(module, ("fastconv.functions",))
    assert report.kept["sigmoid"].startswith("behaviour: prints 'sigmoid of (")
    assert report.served == {"relu": "fastconv.functions.relu"}
    assert capsys.readouterr().out == ""


def test_rule_survives_a_probe_that_raises_or_a_class_without_a_probe():
    module = _module("zc_probe_classes", """
class Relu:
    def forward(self, x):
        raise RuntimeError("a student's unfinished layer")
    def backward(self, dout):
        return dout
class Affine:
    def __init__(self, W, b, scale):
        pass
""")
    report = rules.serve(module, ("fastconv.layers",))
    assert "the user's raises on the probe" in report.kept["Relu"]
    assert "extra parameter 'scale'" in report.kept["Affine"]


def test_signature_rule():
    def book(x, t, batch_size=100):
        pass

    def ours_extra_keyword(x, t, batch_size=100, *, dtype=None):
        pass

    def ours_other_default(x, t, batch_size=10):
        pass

    def label_first(t, x, batch_size=100):
        pass

    assert signature_difference(book, ours_extra_keyword) is None
    assert "default" in signature_difference(book, ours_other_default)
    assert "parameter 1" in signature_difference(book, label_first)


def test_probing_leaves_the_random_state_as_it_was():
    module = _module("zc_probe_random", """
import numpy as np
def shuffle_dataset(x, t):
    order = np.random.permutation(x.shape[0])
    return x[order], t[order]
""")
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    report = rules.serve(module, ("fastconv.util",))
    assert report.served == {"shuffle_dataset": "fastconv.util.shuffle_dataset"}
    np.testing.assert_array_equal(np.random.rand(3), expected)


_BOOK_STYLE_LOADER = '''
import gzip, os, pickle
import numpy as np
dataset_dir = os.path.dirname(os.path.abspath(__file__))
save_file = dataset_dir + "/mnist.pkl"
names = {"train_img": "train-images-idx3-ubyte.gz", "train_label": "train-labels-idx1-ubyte.gz",
         "test_img": "t10k-images-idx3-ubyte.gz", "test_label": "t10k-labels-idx1-ubyte.gz"}

def init_mnist():
    data = {}
    for key, name in names.items():
        print("Converting " + name + " ...")
        with gzip.open(os.path.join(dataset_dir, name)) as f:
            data[key] = np.frombuffer(f.read(), np.uint8, offset=16 if "img" in key else 8)
    with open(save_file, "wb") as f:
        pickle.dump(data, f)

def load_mnist(normalize=True, flatten=True, one_hot_label=False):
    if not os.path.exists(save_file):
        init_mnist()
    with open(save_file, "rb") as f:
        data = pickle.load(f)
    x = data["test_img"].reshape(-1, 784).astype(np.float32) / 255.0
    return (x, data["test_label"]), (x, data["test_label"])
'''


def test_served_loader_builds_the_users_pickle_and_prints_as_plainly(tmp_path, capsys):
    from fastconv.zerochange.datasets import serve_loader
    from zero_change_helpers import write_fake_mnist
    write_fake_mnist(tmp_path)
    (tmp_path / "mnist.py").write_text(_BOOK_STYLE_LOADER)
    module = types.ModuleType("dataset.mnist")
    module.__file__ = str(tmp_path / "mnist.py")
    exec(compile(_BOOK_STYLE_LOADER, module.__file__, "exec"), module.__dict__)
    assert "load_mnist" in serve_loader(module).served
    for first in (True, False):  # the first call converts, as the book's loader does
        (x, t), _ = module.load_mnist()
        out = capsys.readouterr().out
        assert out.count("Converting") == (4 if first else 0), out
        assert (tmp_path / "mnist.pkl").is_file()
    assert x.shape == (40, 784) and t.shape == (40,)  # fastconv read the .gz (40 training images)


def test_a_symlinked_script_imports_from_its_own_folder_as_in_a_plain_run(tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.mkdir()
    (real / "helper.py").write_text("WHERE = 'real'\n")
    (real / "script.py").write_text("import helper\nprint('imported from', helper.WHERE)\n")
    (link / "script.py").symlink_to(real / "script.py")
    plain = run(["link/script.py"], tmp_path, tmp_path)
    served = run(["link/script.py"], tmp_path, tmp_path, runner=True)
    assert plain.returncode == served.returncode == 0, served.stderr
    assert plain.stdout == served.stdout == "imported from real\n"


def test_a_folder_with_a_main_module_runs_as_in_a_plain_run(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "helper.py").write_text("WHERE = 'app'\n")
    (app / "__main__.py").write_text(
        "import sys, helper\nprint('main of', helper.WHERE, sys.argv[1:])\n"
        "raise SystemExit(3)\n")
    (tmp_path / "empty").mkdir()
    plain = run(["app", "x"], tmp_path, tmp_path)
    served = run(["app", "x"], tmp_path, tmp_path, runner=True)
    assert plain.returncode == served.returncode == 3, served.stderr
    assert plain.stdout == served.stdout == "main of app ['x']\n"
    plain, served = (run(["empty"], tmp_path, tmp_path, runner=runner) for runner in (0, 1))
    assert plain.returncode == served.returncode == 1
    assert "can't find '__main__' module in" in served.stderr


def test_a_scripts_own_excepthook_reports_its_error_as_in_a_plain_run(tmp_path):
    (tmp_path / "hooked.py").write_text(
        "import sys\n"
        "sys.excepthook = lambda kind, error, tb: print('hook:', kind.__name__, error,\n"
        "                                              tb.tb_frame.f_code.co_filename.endswith(\n"
        "                                                  'hooked.py'), file=sys.stderr)\n"
        "raise ValueError('boom')\n")
    plain = run(["hooked.py"], tmp_path, tmp_path)
    served = run(["hooked.py"], tmp_path, tmp_path, runner=True)
    assert plain.returncode == served.returncode == 1
    assert plain.stderr == "hook: ValueError boom True\n"
    assert served.stderr.split("fastconv zero-change report")[0] == plain.stderr


_HOOK_RAISES = ("def hook(kind, error, tb):\n    raise ValueError('hook broke')\n"
                "sys.excepthook = hook\n")
_STOPPED = "import os, signal, time\ndef train():\n    os.kill(os.getpid(), signal.SIGINT)\n" \
           "    time.sleep(60)\ntrain()\n"
_ENDINGS = {  # a script's end -> its exit status
    "ctrl-c": (_STOPPED, -signal.SIGINT),
    "ctrl-c, its hook raises": (_HOOK_RAISES + "raise KeyboardInterrupt\n", -signal.SIGINT),
    "ctrl-c, its hook is None": ("sys.excepthook = None\nraise KeyboardInterrupt\n",
                                 -signal.SIGINT),
    "ctrl-c, its hook deleted": ("del sys.excepthook\nraise KeyboardInterrupt\n",
                                 -signal.SIGINT),
    "an error, its hook raises": (_HOOK_RAISES + "raise RuntimeError('boom')\n", 1),
    "an error raised from another": ("try:\n    {}['k']\nexcept KeyError as e:\n"
                                     "    raise ValueError('v') from e\n", 1),
    "a syntax error": ("x = 1\ndef (\n", 1),
    "an error, its hook exits": ("sys.excepthook = lambda *a: sys.exit(3)\nraise ValueError\n",
                                 3),
    "ctrl-c, its hook exits": ("sys.excepthook = lambda *a: sys.exit(3)\n"
                               "raise KeyboardInterrupt\n", 3),
    "an exception group that except* raised again": (
        "try:\n    raise ExceptionGroup('g', [ValueError(1), TypeError(2)])\n"
        "except* ValueError:\n    raise RuntimeError('r')\n", 1),
    "an exit code that cannot be shown": (
        "class Code:\n    def __str__(self):\n        raise RuntimeError\nsys.exit(Code())\n", 1),
    "an exit message with sys.stderr None": (
        "print('out')\nsys.stderr = None\nsys.exit('bye')\n", 1),
}


@pytest.mark.parametrize("ending", _ENDINGS)
def test_a_script_that_fails_or_is_stopped_prints_and_ends_as_in_a_plain_run(tmp_path, ending):
    # Python's own messages, the script's hook or what the interpreter prints when that hook
    # fails or is missing, with no frame of the runner's or runpy's; on Ctrl-C the process
    # still ends by SIGINT, after its exit handlers
    source, status = _ENDINGS[ending]
    if "except*" in source and sys.version_info < (3, 11):
        pytest.skip("except* came in Python 3.11")
    (tmp_path / "ending.py").write_text("import sys\n" + source)
    runs = [subprocess.run(command, cwd=tmp_path, env=clean_env(tmp_path), capture_output=True,
                           text=True, timeout=120)
            for command in ([sys.executable, "ending.py"],
                            [sys.executable, "-m", "fastconv", "ending.py"])]
    plain, served = runs
    assert plain.returncode == served.returncode == status
    assert served.stderr == plain.stderr and served.stdout == plain.stdout


def test_the_report_follows_the_traceback_of_a_stopped_run_as_of_a_failed_one(tmp_path):
    (tmp_path / "ending.py").write_text(_ENDINGS["ctrl-c"][0])
    plain = run(["ending.py"], tmp_path, tmp_path)
    served = run(["ending.py"], tmp_path, tmp_path, runner=True)  # with --report
    assert served.returncode == plain.returncode == -signal.SIGINT
    assert served.stderr.split("fastconv zero-change report", 1)[0] == plain.stderr


def test_the_report_comes_after_the_scripts_own_exit_handlers(tmp_path):
    (tmp_path / "handler.py").write_text(
        "import atexit, sys\n"
        "atexit.register(lambda: print('handler ran', file=sys.stderr))\n")
    served = run(["handler.py"], tmp_path, tmp_path, runner=True)  # with --report
    assert served.returncode == 0
    assert served.stderr.startswith("handler ran\nfastconv zero-change report"), served.stderr
