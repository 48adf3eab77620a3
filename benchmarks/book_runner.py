"""The book's ch07/train_convnet.py and ch08/train_deepnet.py, unchanged: plainly, through
``python -m fastconv`` (parity mode) and ``python -m fastconv --fast``, as training steps done
in the same time box from process start. Not an asv benchmark: a script run by hand.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/book_runner.py --book /tmp/book

Each script runs from its chapter folder of a scratch copy of the book (``--book``, the
upstream tree with the MNIST .gz files in its ``dataset/``), through the seeding driver of
``tools/book_scripts.py``, and is stopped with Ctrl-C after ``--budget`` seconds. The steps
are the "train loss:" lines the book's Trainer printed by then (fastconv's Trainer in fast mode
draws a progress bar on stderr instead: its last count); the ratio is runner steps
over plain steps (issue #14's targets: parity >= 5x, fast >= 10x). Before the timed runs, each
runner side runs once until its first epoch line, so that Numba's cache is warm.
"""
import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("ch07/train_convnet.py", "ch08/train_deepnet.py")
TARGETS = {"runner": 5.0, "fast": 10.0}


def _tool():
    sys.path.insert(0, str(ROOT / "tools"))  # tools/ is a folder of scripts, not a package
    import book_scripts
    return book_scripts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", required=True, help="the book's tree")
    parser.add_argument("--budget", type=float, default=100.0, help="seconds per run (default 100)")
    parser.add_argument("--scripts", nargs="+", default=list(SCRIPTS), metavar="chNN/SCRIPT.py")
    parser.add_argument("--no-warm", action="store_true", help="skip the untimed warm-up runs")
    options = parser.parse_args(argv)
    tool = _tool()
    workdir = tempfile.mkdtemp(prefix="book-runner-")
    tree, driver = tool.prepare(options.book, workdir)
    env = tool.child_env()
    print(f"budget {options.budget:.0f} s per run; before: {tool.machine()}")
    print("| script | plain | parity (runner) | fast (runner --fast) | parity output |")
    print("|---|---:|---:|---:|---|")
    ok = True
    for script in options.scripts:
        runs = tool.run_script(tree, driver, script, options.budget, True, Path(workdir) / "plots",
                               env, original=options.book, warm=not options.no_warm)
        plain = runs["plain"].work()
        cells = [f"`{script}`", f"{plain} steps"]
        for side in ("runner", "fast"):
            steps = runs[side].work()
            ratio = steps / plain if plain else float("inf")
            ok &= ratio >= TARGETS[side]
            cells.append(f"{steps} steps, **{ratio:.1f}x** (target {TARGETS[side]:.0f}x)")
        cells.append(tool.verdict(runs))
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"after: {tool.machine()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
