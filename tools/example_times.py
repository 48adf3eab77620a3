"""Run the examples, time them, and write the times into README.md and docs/examples.md.

    python tools/example_times.py                       # every example, the book's sizes
    python tools/example_times.py --only train_convnet.py train_neuralnet.py
    python tools/example_times.py --dry-run             # print the block, write nothing
    python tools/example_times.py --fast                # the examples in fast mode
    python tools/example_times.py --save times.json     # also keep the measurements
    python tools/example_times.py --load times.json     # rewrite the pages, run nothing

Each example runs once as its own process, one after the other, with its output in a
temporary folder; its time is the process's wall time (interpreter start-up, imports, data
loading, Numba's compilation or cache load, training and figures). The block between the
markers ``<!-- example-times:start -->`` and ``<!-- example-times:end -->`` in each file is
replaced by a table of the measured times with the date, the machine, its load average and
the command, so that a reader can judge the figures. The README's table holds the main job
and the longest and shortest book experiments (``README_SCRIPTS``); docs/examples.md holds
every example. An example that fails keeps its row with
the exit code instead of a time, and the script exits non-zero.

Run it on an idle machine: on a shared one the times say more about the neighbours.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"
TARGETS = (README, ROOT / "docs" / "examples.md")
START, END = "<!-- example-times:start -->", "<!-- example-times:end -->"

# script -> what it runs by default (the book's settings), for the table
SCRIPTS = {
    "train_convnet.py": "ch07 SimpleConvNet, 20 epochs",
    "train_deepnet.py": "ch08 DeepConvNet, 20 epochs",
    "train_neuralnet.py": "ch05 TwoLayerNet, 10,000 iterations",
    "optimizer_compare_mnist.py": "ch06 four optimizers, 2,000 iterations",
    "weight_init_compare.py": "ch06 three initialisations, 2,000 iterations",
    "batch_norm_test.py": "ch06 with/without BatchNorm, 16 scales x 20 epochs",
    "overfit_weight_decay.py": "ch06 weight decay, 201 epochs",
    "overfit_dropout.py": "ch06 Dropout, 301 epochs",
    "hyperparameter_optimization.py": "ch06 random search, 100 trials x 50 epochs",
    "sweep_convnet.py": "SimpleConvNet sweep of lr x batch size, 12 trials x 5 epochs",
}
README_SCRIPTS = ("train_convnet.py", "train_deepnet.py", "train_neuralnet.py")


def duration(seconds):
    """'48 s', '3.2 min', '1.1 h'."""
    if seconds < 100:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def run_one(script, extra, out_root):
    """(exit code, wall seconds, the script's own summary lines) of one example run."""
    command = [sys.executable, str(EXAMPLES / script), *extra,
               "--out", str(out_root / Path(script).stem)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    summary = [line for line in result.stdout.splitlines()
               if line.startswith(("Final test accuracy", "Training:", "First steps"))]
    if result.returncode:
        sys.stderr.write(f"{script} failed ({result.returncode}):\n{result.stderr[-2000:]}\n")
    return result.returncode, seconds, summary


def images_per_second(summary):
    for line in summary:
        found = re.search(r"([\d,]+|n/a) images/s", line)
        if found:
            return found.group(1)
    return "n/a"


def _compare():
    """benchmarks/compare.py, which names the machine and its BLAS as the comparison does."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import compare
    return compare


def machine():
    """The CPU as compare.py names it (model, family and widest vector unit: "AMD EPYC" alone
    does not tell a Zen 4 from a Zen 5, which trains about twice as fast), how many, and the
    system."""
    try:
        cpu = _compare().machine_name()
    except Exception:  # the benchmarks are not beside this script
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPUs ({platform.system()})"


def blas_kernel():
    """The BLAS kernel the examples run on, as threadpoolctl names it (OpenBLAS's
    architecture; ``compare.blas_info``), or None where it cannot tell."""
    try:
        import numpy  # noqa: F401  (loads the BLAS that the examples load too)
        blas_info = _compare().blas_info
        kernels = [lib["architecture"] for lib in blas_info() if lib.get("architecture")]
    except Exception:  # threadpoolctl cannot read this platform's libraries
        return None
    return kernels[0] if kernels else None


def measured_now():
    """When and where a measurement ends: the time, the load average, the machine, its BLAS
    kernel and whether ``OPENBLAS_CORETYPE`` forced it (the examples inherit this process's
    environment), kept with the rows so that ``--load`` on another day or machine still
    describes this one."""
    return {"stamp": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
            "machine": machine(),
            "blas": blas_kernel(), "forced_kernel": os.environ.get("OPENBLAS_CORETYPE") or ""}


def block(rows, extra, measured=None, more=None):
    """The marked block: a table of rows {script: (exit code, seconds, summary lines)}, with
    ``measured`` (``measured_now()``'s, by default now) and a closing line."""
    measured = measured or measured_now()
    command = " ".join(["python tools/example_times.py", *extra]).strip()
    forced = measured.get("forced_kernel")  # None: measured before it was recorded
    blas = ""
    if forced == "":  # nothing forced OpenBLAS's kernel: no user has these variables set
        command = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " + command
    if measured.get("blas"):
        blas = f", BLAS kernel {measured['blas']}"
    if forced:
        blas += f" (forced by OPENBLAS_CORETYPE={forced}: slower than a user's machine)"
    lines = [START,
             textwrap.fill(f"Measured {measured['stamp']} by `{command}` on "
             f"{measured['machine']}{blas}, load average {measured['load']:.1f} at the end; "
             + ("fast mode (float32)" if "--fast" in extra else
                "parity mode, the default (float64, the book's numbers)")
             + "; wall time of the whole process, one run each, with Numba's on-disk cache "
             "as earlier runs left it.", width=92, break_on_hyphens=False),
             "",
             "| script | what it runs | wall time | steady training speed |",
             "|---|---|---:|---:|"]
    for script, (code, seconds, summary) in rows.items():
        time_text = duration(seconds) if code == 0 else f"failed (exit {code})"
        lines.append(f"| `{script}` | {SCRIPTS[script]} | {time_text} | "
                     f"{images_per_second(summary)} images/s |")
    if more:
        lines += ["", more]
    lines.append(END)
    return "\n".join(lines)


def rewrite(path, text):
    content = path.read_text(encoding="utf-8")
    if START not in content or END not in content:
        raise SystemExit(f"{path}: no {START} ... {END} block to replace")
    head, rest = content.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + text + tail, encoding="utf-8")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(SCRIPTS), default=list(SCRIPTS))
    parser.add_argument("--fast", action="store_true", help="run the examples in fast mode")
    parser.add_argument("--dry-run", action="store_true", help="print the block only")
    parser.add_argument("--save", metavar="JSON", help="also write the measurements here")
    parser.add_argument("--load", metavar="JSON",
                        help="rewrite the pages from a --save file instead of running")
    options = parser.parse_args(argv)
    if options.load:
        saved = json.loads(Path(options.load).read_text(encoding="utf-8"))
        rows = {script: tuple(row) for script, row in saved["rows"].items()}
        extra, measured = saved["extra"], saved["measured"]
    else:
        extra = (["--only", *options.only] if options.only != list(SCRIPTS) else []) + (
            ["--fast"] if options.fast else [])
        rows = {}
        with tempfile.TemporaryDirectory(prefix="example-times-") as out_root:
            for script in options.only:
                print(f"running {script} ...", flush=True)
                rows[script] = run_one(script, ["--fast"] if options.fast else [],
                                       Path(out_root))
                print(f"  {duration(rows[script][1])}", flush=True)
        measured = measured_now()
        if options.save:
            Path(options.save).write_text(json.dumps(
                {"rows": rows, "extra": extra, "measured": measured}, indent=1),
                encoding="utf-8")
    for path in TARGETS:
        if path == README:
            shown = {s: rows[s] for s in README_SCRIPTS if s in rows}
            more = ("The times of every script measured, and every example with its options: "
                    "[docs/examples.md](docs/examples.md).")
        else:
            shown, more = rows, None
        text = block(shown, extra, measured, more)
        print(text)
        if not options.dry_run:
            rewrite(path, text)
            print(f"rewrote the block in {path}")
    return 1 if any(code for code, _, _ in rows.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
