"""Run the book's ch03-ch08 scripts plainly and through ``python -m fastconv``; compare and time.

    python tools/book_scripts.py --book /tmp/book                      # every script, 60 s each
    python tools/book_scripts.py --book /tmp/book --fast --budget 90 --only ch07/train_convnet.py

Every script of ch03-ch08 that imports the book's package (``common``, ``dataset``, the
chapters' networks) runs from its own chapter folder, in a scratch copy of the book (the
scripts write files such as ``params.pkl``; the copy gets the book's ``mnist.pkl`` built once,
so no run prints the loader's first-run messages). Each run goes through a small driver that
calls ``np.random.seed(0)`` and runs the script with runpy, so both sides start from the same
random state: plainly, through the runner (parity mode), and with ``--fast`` in fast mode too.

A run is timed from process start and stopped with SIGINT (Ctrl-C) after ``--budget``
seconds. Outputs are compared line by line over the lines both runs printed completely
(numbers to rounding, relative 1e-9; the text exactly). The speed-up is the work done per
second, runner over plain (above 1: the runner is faster): for a run that finished, its
lines over its time; for a stopped one, the lines it printed in the budget, where a line is
a training step (``train loss:``, or fastconv's progress bar in fast mode) when the script
prints those. Where the runner finished and the plain run was stopped, the cell also gives
the sure lower bound budget / runner time (a script that prints once an epoch, or only at
the end, makes the rate coarse).
"""
import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHAPTERS = ("ch03", "ch04", "ch05", "ch06", "ch07", "ch08")
# the chapters' own network modules: imported by the scripts, not scripts themselves
NET_MODULES = {"two_layer_net.py", "simple_convnet.py", "deep_convnet.py",
               "multi_layer_net.py", "multi_layer_net_extend.py"}
_IMPORTS_BOOK = re.compile(
    r"^\s*(from|import)\s+(common|dataset|two_layer_net|simple_convnet|deep_convnet)\b", re.M)
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|\b(?:nan|inf)\b")
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]+")  # an object's repr: differs between any two runs
_STEP = "train loss:"
_PROGRESS = re.compile(r"\|\s*(\d+)/\d+ \[")
RTOL = 1e-9
SIGINT_GRACE = 30  # seconds for a script to unwind after Ctrl-C before it is killed

DRIVER = '''import os, runpy, sys
import numpy as np
np.random.seed(0)
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(os.path.abspath(script))
runpy.run_path(script, run_name="__main__")
'''


def book_scripts(book):
    """``chNN/name.py`` of every script that imports the book's package, in order."""
    found = []
    for chapter in CHAPTERS:
        for path in sorted((Path(book) / chapter).glob("*.py")):
            if path.name not in NET_MODULES and _IMPORTS_BOOK.search(path.read_text("utf-8")):
                found.append(f"{chapter}/{path.name}")
    return found


# ---- comparing outputs ------------------------------------------------------------------

def complete_lines(text):
    """The lines printed completely (a run stopped mid-line leaves a partial last one)."""
    lines = text.split("\n")
    return lines[:-1]


def _split(line):
    line = _ADDRESS.sub("at 0x?", line)
    return _NUMBER.sub("#", line), [float(n) for n in _NUMBER.findall(line)]


def compare_lines(plain, runner, rtol=RTOL):
    """(verdict, max relative difference) over the lines both printed.

    verdict: "identical", "same to rounding", or "differs: line N ..." (the first line whose
    text differs, or whose numbers differ by more than rtol relative to the larger value).
    """
    common = min(len(plain), len(runner))
    worst, first_bad = 0.0, None
    for index in range(common):
        a, b = plain[index], runner[index]
        if a == b:
            continue
        (text_a, nums_a), (text_b, nums_b) = _split(a), _split(b)
        if text_a != text_b or len(nums_a) != len(nums_b):
            return f"differs: line {index + 1} {a!r} against {b!r}", float("inf")
        for x, y in zip(nums_a, nums_b):
            if x == y:
                continue
            scale = max(abs(x), abs(y))
            rel = abs(x - y) / scale if scale else 0.0
            if rel != rel:  # nan against a number
                rel = float("inf")
            worst = max(worst, rel)
            if rel > rtol and first_bad is None:
                first_bad = f"line {index + 1} {a!r} against {b!r}"
    if first_bad:
        return f"differs: {first_bad}", worst
    return ("identical" if worst == 0.0 else "same to rounding"), worst


def work(lines, stderr=""):
    """Training steps done: the book's Trainer prints a line a step; fastconv's in fast mode
    draws a progress bar on stderr instead ("| 1171/12000 ["). Else the lines printed."""
    steps = sum(1 for line in lines if line.startswith(_STEP))
    if steps:
        return steps
    bars = _PROGRESS.findall(stderr)
    return int(bars[-1]) if bars else len(lines)


def _counts_steps(lines, stderr):
    return any(line.startswith(_STEP) for line in lines) or bool(_PROGRESS.search(stderr))


# ---- running ----------------------------------------------------------------------------

class Run:
    def __init__(self, code, seconds, stdout, stderr, stopped):
        self.code, self.seconds, self.stopped = code, seconds, stopped
        self.lines = complete_lines(stdout) if stopped else stdout.splitlines()
        self.stderr = stderr
        self.failed = not stopped and code != 0

    def error(self):
        """The last line of a failed run's traceback (its exception), for comparison."""
        tail = [line for line in self.stderr.splitlines() if line.strip()]
        return tail[-1] if tail else f"exit {self.code}"

    def work(self):
        return work(self.lines, self.stderr)

    def rate(self):
        return self.work() / self.seconds if self.seconds > 0 else 0.0


def _default_sigint():
    # a shell's background job starts with SIGINT ignored, and Python keeps it ignored
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_one(command, cwd, env, budget):
    """Run ``command``; Ctrl-C (SIGINT) after ``budget`` seconds, SIGKILL if it hangs on.

    A stopped run's output counts only up to the moment of the SIGINT.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+b") as out, tempfile.TemporaryFile("w+b") as err:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err,
                                   preexec_fn=_default_sigint)
        stopped, printed = False, None
        try:
            process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            stopped = True
            elapsed = time.perf_counter() - start
            printed = os.fstat(out.fileno()).st_size, os.fstat(err.fileno()).st_size
            interrupt(process)
        if not stopped:
            elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read(printed[0]) if stopped else out.read()
        stderr = err.read(printed[1]) if stopped else err.read()
        return Run(process.returncode, elapsed, stdout.decode("utf-8", "replace"),
                   stderr.decode("utf-8", "replace"), stopped)


def interrupt(process):
    """Ctrl-C, as a user stops a training script; killed if it has not ended within
    SIGINT_GRACE seconds."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=SIGINT_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def warm_up(command, cwd, env, until=("=== epoch",), timeout=600):
    """Run ``command`` until it prints a line starting with one of ``until`` (a Trainer prints
    its first evaluation after the first step: every kernel of training has compiled by
    then), then stop it. Fills Numba's on-disk cache so that no timed run compiles."""
    with tempfile.TemporaryFile("w+b") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                   stderr=subprocess.DEVNULL, preexec_fn=_default_sigint)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            out.seek(0)
            if any(line.startswith(until) for line in out.read().decode("utf-8", "replace").splitlines()):
                break
        if process.poll() is None:
            interrupt(process)


def child_env(timing_env=True, extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTCONV_MODE", "FASTCONV_ZERO_CHANGE", "FASTCONV_PLOTS")}
    if timing_env:  # the machine's OpenBLAS overrides slow both sides; timing runs drop them
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    env["MPLBACKEND"] = "Agg"
    env["PYTHONUNBUFFERED"] = "1"  # every line a stopped run printed reaches us
    env.update(extra or {})
    return env


def prepare(book, workdir, env=None):
    """A scratch copy of the book with its mnist.pkl built; returns (tree, driver path)."""
    tree = Path(workdir) / "book"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(book, tree, ignore=shutil.ignore_patterns("__pycache__", ".git"))
    driver = Path(workdir) / "seeded.py"
    driver.write_text(DRIVER)
    if (tree / "dataset" / "mnist.py").exists():
        loader = "import sys; sys.path.insert(0, '.'); from dataset.mnist import load_mnist; load_mnist()"
        subprocess.run([sys.executable, "-c", loader], cwd=tree,
                       env=env or child_env(), capture_output=True, timeout=600)
    return tree, driver


def run_script(tree, driver, script, budget, fast, plots, env, original=None, warm=False):
    """Plain, runner and (fast) runner runs of one script, each in a fresh chapter folder.

    warm: first run each runner side until its first epoch line (see ``warm_up``), untimed.
    """
    chapter, name = script.split("/")
    sides = {"plain": [], "runner": ["-m", "fastconv", "--plots", str(plots)]}
    if fast:
        sides["fast"] = ["-m", "fastconv", "--fast", "--plots", str(plots)]
    commands = {side: [sys.executable, *prefix, str(driver), name] for side, prefix in sides.items()}

    def fresh_chapter():
        if original is not None:  # undo files a previous run wrote (params.pkl, ...)
            shutil.rmtree(tree / chapter)
            shutil.copytree(Path(original) / chapter, tree / chapter,
                            ignore=shutil.ignore_patterns("__pycache__"))

    if warm:
        for side in sides:
            if side != "plain":
                fresh_chapter()
                warm_up(commands[side], tree / chapter, env, timeout=max(budget, 300))
    runs = {}
    for side in sides:
        fresh_chapter()
        runs[side] = run_one(commands[side], tree / chapter, env, budget)
    return runs


# ---- the table --------------------------------------------------------------------------

def verdict(runs):
    plain, runner = runs["plain"], runs["runner"]
    if plain.failed or runner.failed:
        if plain.failed and runner.failed and plain.error() == runner.error():
            return f"same (both fail: {plain.error()[:70]})"
        which = "plain" if plain.failed else "runner"
        failed = plain if plain.failed else runner
        return f"**{which} fails** ({failed.error()[:70]})"
    text, worst = compare_lines(plain.lines, runner.lines)
    lines = min(len(plain.lines), len(runner.lines))
    if plain.stopped or runner.stopped:
        text += f" ({lines} lines in common)"
    if text.startswith("same to rounding"):
        text = f"same to rounding (max rel. diff {worst:.1e})"
    return text


def cell(run, budget):
    if run.stopped:
        steps = run.work()
        unit = "steps" if _counts_steps(run.lines, run.stderr) else "lines"
        return f"{budget:.0f} s: {steps} {unit}"
    return f"{run.seconds:.1f} s" + (f" (exit {run.code})" if run.failed else "")


def speedup(plain, other):
    if plain.failed or other.failed:
        return "-"
    if not plain.stopped and not other.stopped:  # both did all the work: time against time
        return f"{plain.seconds / other.seconds:.2f}"
    if plain.stopped and not other.stopped:
        # a script that prints little (one line per epoch, or only at the end) makes the
        # rate coarse; that the runner finished where plain did not is a sure lower bound
        bound = f" (>= {plain.seconds / other.seconds:.1f})"
    else:
        bound = ""
    if plain.rate() == 0 or other.rate() == 0:
        return "n/a (no output in budget)" + bound
    return f"{other.rate() / plain.rate():.2f}{bound}"


def row(script, runs, budget):
    cells = [f"`{script}`", verdict(runs), cell(runs["plain"], budget),
             cell(runs["runner"], budget), speedup(runs["plain"], runs["runner"])]
    if "fast" in runs:
        cells += [cell(runs["fast"], budget), speedup(runs["plain"], runs["fast"])]
    return "| " + " | ".join(cells) + " |"


def header(fast):
    head = "| script | output through the runner | plain | runner | speed-up |"
    rule = "|---|---|---:|---:|---:|"
    if fast:
        head += " fast | fast speed-up |"
        rule += "---:|---:|"
    return [head, rule]


def machine():
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.machine()}, {os.cpu_count()} cores, load average {load}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--book", required=True, help="the book's tree (ch03..ch08, common, dataset)")
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds per run before Ctrl-C (default 60)")
    parser.add_argument("--fast", action="store_true", help="a third run in fast mode")
    parser.add_argument("--only", nargs="+", metavar="chNN/SCRIPT.py", help="these scripts only")
    parser.add_argument("--workdir", help="where the scratch copy goes (default: a temporary folder)")
    parser.add_argument("--warm", action="store_true",
                        help="before timing a script, run it through the runner until its first "
                             "epoch line, so that Numba's cache holds every kernel it uses")
    options = parser.parse_args(argv)
    scripts = options.only or book_scripts(options.book)
    workdir = options.workdir or tempfile.mkdtemp(prefix="book-scripts-")
    tree, driver = prepare(options.book, workdir)
    env = child_env()
    print(f"{len(scripts)} scripts, budget {options.budget:.0f} s, {machine()}", file=sys.stderr)
    rows = header(options.fast)
    for script in scripts:
        runs = run_script(tree, driver, script, options.budget, options.fast,
                          Path(workdir) / "plots", env, original=options.book,
                          warm=options.warm)
        rows.append(row(script, runs, options.budget))
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"after the runs: {machine()}", file=sys.stderr)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
