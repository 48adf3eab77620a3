"""tools/book_scripts.py: how it compares two outputs, how it stops a run at the budget, and
one real pair of runs (plainly and through the runner) on the fixture book tree."""
import signal
import sys

import pytest

from zero_change_helpers import FIXTURES, clean_env, make_tree


@pytest.fixture(scope="module")
def tool(load_script):
    return load_script("tools/book_scripts.py")


def test_finds_the_scripts_that_import_the_books_package(tool):
    found = tool.book_scripts(FIXTURES / "book_tree")
    assert {"ch04/train_neuralnet.py", "ch05/train_neuralnet.py", "ch06/optimizer_naive.py",
            "ch06/workers.py"} <= set(found)
    assert not [name for name in found if name.endswith("two_layer_net.py")]  # a net, not a script


def test_compare_lines(tool):
    same = ["loss 2.302585092994046", "=== epoch:1, train acc:0.1 ==="]
    assert tool.compare_lines(same, list(same)) == ("identical", 0.0)
    verdict, worst = tool.compare_lines(["loss 2.302585092994046"], ["loss 2.302585092994045"])
    assert verdict == "same to rounding" and 0 < worst < 1e-15
    verdict, _ = tool.compare_lines(["a", "acc 0.91"], ["a", "acc 0.9100001"])
    assert verdict.startswith("differs: line 2")
    assert tool.compare_lines(["W1:0.5"], ["W2:0.5"])[0].startswith("differs: line 1")
    assert tool.compare_lines(["x 1 2"], ["x 1"])[0].startswith("differs")
    assert tool.compare_lines(["x 1.0"], ["x nan"])[0].startswith("differs")
    # a stopped run: only the lines both printed count
    assert tool.compare_lines(["1", "2", "3"], ["1", "2"])[0] == "identical"
    # object addresses differ between any two runs
    assert tool.compare_lines(["<Image size=28x28 at 0x7F76AECCC5D0>"],
                              ["<Image size=28x28 at 0x7FBE812313D0>"])[0] == "identical"


def test_lines_and_work(tool):
    assert tool.complete_lines("a\nb\npartial") == ["a", "b"]
    assert tool.complete_lines("a\nb\n") == ["a", "b"]
    trainer = ["train loss:2.3", "=== epoch:1, train acc:0.1, test acc:0.1 ===", "train loss:2.2"]
    assert tool.work(trainer) == 2
    assert tool.work(["epoch:1 | 0.1 - 0.2", "epoch:2 | 0.2 - 0.3"]) == 2
    # fastconv's Trainer in fast mode: a progress bar on stderr, its last count
    bar = ("train:   0%|    | 7/12000 [00:00, loss=2.2]\rtrain:  10%|9   | 1171/12000 "
           "[00:22, loss=0.1]\r")
    assert tool.work(["=== epoch:1, train acc:0.1, test acc:0.1 ==="], bar) == 1171


def test_verdict_and_speedup(tool):
    def run(code=0, seconds=2.0, out="", err="", stopped=False):
        return tool.Run(code, seconds, out, err, stopped)

    failing = run(1, err="Traceback ...\nModuleNotFoundError: No module named 'PIL'\n")
    same_failure = {"plain": failing, "runner": run(1, err=failing.stderr)}
    assert tool.verdict(same_failure).startswith("same (both fail: ModuleNotFoundError")
    assert tool.verdict({"plain": run(out="1\n"), "runner": failing}).startswith("**runner fails**")
    assert tool.speedup(run(seconds=4.0), run(seconds=2.0)) == "2.00"  # both finished: times
    plain = run(seconds=60.0, out="train loss:1\n" * 10, stopped=True)
    assert tool.speedup(plain, run(seconds=60.0, out="train loss:1\n" * 50, stopped=True)) == "5.00"
    coarse = run(seconds=60.0, out="calculating ...\n", stopped=True)
    assert tool.speedup(coarse, run(seconds=10.0, out="calculating ...\n0.99\n")) == "12.00 (>= 6.0)"


def test_budget_stops_a_run_with_ctrl_c_even_from_a_background_job(tool, tmp_path, monkeypatch):
    script = tmp_path / "forever.py"
    script.write_text("import itertools, time\nfor i in itertools.count():\n"
                      "    print('tick', i, flush=True)\n    time.sleep(0.02)\n")
    monkeypatch.setattr(tool, "SIGINT_GRACE", 20)
    # a shell's background job starts with SIGINT ignored; the child must get it back
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        run = tool.run_one([sys.executable, str(script)], tmp_path, clean_env(tmp_path), 1.5)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert run.stopped and not run.failed
    assert run.code == -signal.SIGINT  # ended by Ctrl-C, not killed after the grace
    assert run.lines and run.lines == [f"tick {i}" for i in range(len(run.lines))]


def test_plain_and_runner_runs_of_a_fixture_script_agree(tool, tmp_path):
    book = make_tree(tmp_path, "book_tree", "dataset")
    env = clean_env(tmp_path)
    env.update(MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    tree, driver = tool.prepare(book, tmp_path / "work", env)
    runs = tool.run_script(tree, driver, "ch05/train_neuralnet.py", 240, False,
                           tmp_path / "plots", env, original=book)
    assert not runs["plain"].stopped and not runs["runner"].stopped, runs["runner"].stderr
    assert len(runs["plain"].lines) == 21
    assert tool.verdict(runs) in ("identical", ) or tool.verdict(runs).startswith(
        "same to rounding"), tool.verdict(runs)
    row = tool.row("ch05/train_neuralnet.py", runs, 240)
    assert row.startswith("| `ch05/train_neuralnet.py` | ") and row.count("|") == 6
