"""Run the book's notebooks plainly and under ``%load_ext fastconv``, and compare the outputs.

    python tools/book_notebooks.py --book /tmp/book                 # all notebooks/*.ipynb
    python tools/book_notebooks.py --book /tmp/book --reduce        # short training loops
    python tools/book_notebooks.py --book /tmp/book --only ch05 ch07 --timeout 600

Each notebook runs twice with nbclient (a fresh kernel each time), one side after the other.
Both sides start from a fresh copy of the book's tree at the same path (so that files a
notebook writes, such as ``ch07/params.pkl`` or ``dataset/mnist.pkl``, and paths in warnings
are the same on both sides, and the book's folder is never written to). The kernel's working
folder is the notebook's folder, ``MPLBACKEND`` is ``Agg`` (``--backend inline``: the
notebook's inline figures), and a first cell ``import numpy as np; np.random.seed(0)`` is
added on both sides; the fastconv side gets ``%load_ext fastconv`` before it.

Per cell of the book's notebook, the two sides must give:

* the same stdout and stderr text and the same text/plain results: numbers equal to a
  relative 1e-9 (float64 sums in another order), runs of spaces counted as one (NumPy pads
  its columns to the printed digits), everything else exactly;
* errors with the same exception name (a cell that fails plainly, for a missing package
  or file, must fail in the same way), and the same number of images.

Left out, each for a reason: the kernel's process id and tempfile's random names in
messages; NumPy's floating-point warnings ("overflow encountered in dot"), which name the
line that overflowed (fastconv's, on its side) and which fastconv's compiled kernels (such
as SoftmaxWithLoss's) do not raise: the table notes the kinds each side showed when they
differ. The numbers a gradient check prints (mean |numerical - backprop|) are rounding
noise themselves: in the cells ``GRADIENT_CHECKS`` lists they compare to 1e-10 absolute.

``--reduce`` shortens the long training loops by the textual substitutions in ``REDUCE``,
the same on both sides, and prints each one it made. The result is a markdown table:
notebook | cells | same outputs? | first difference | time plain | time with %load_ext.
The exit status is 1 when any notebook differs, or a side timed out.
"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SEED_CELL = "import numpy as np; np.random.seed(0)"
LOAD_CELL = "%load_ext fastconv"
REL = 1e-9
# A gradient check prints mean |numerical - backprop| gradients, a difference of two values
# that agree to ~1e-10: rounding noise itself, so another float64 summation order moves its
# leading digits. The noise of the book's numerical gradient (h = 1e-4, loss ~2) is about
# 1e-15 * 2 / 2e-4 = 1e-11 per entry; 1e-10 absolute is above it, and far below the 1e-6 to
# 1e-4 at which a check reports a broken gradient (or float32). Cells holding this text:
GRADIENT_CHECKS = [("ch05", "grad_numerical ="), ("ch06", "grad_numerical ="),
                   ("ch07", "grad_num =")]
ATOL_CHECK = 1e-10
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_SPACES = re.compile(r"[ \t]+")
# A Python warning on stderr: "file:line: Category: message" and the source line, indented.
_WARNING = re.compile(r"^[^\n]*?:\d+: (\w+Warning): ([^\n]*)\n(?:  [^\n]*\n?)?", re.M)
_FP_ERROR = re.compile(r"(overflow|invalid value|divide by zero|underflow) encountered in ")
_KERNEL_FILE = re.compile(r"ipykernel_\d+")  # the kernel's process id differs per run
_TEMP_NAME = re.compile(r"\btmp[a-z0-9_]{8}\b")  # tempfile's random names (PIL's show())

# (notebook, text in a cell, replacement). Only iteration, epoch, trial and sample counts;
# each is the book's own constant (or its commented-out "reduce the data" line).
REDUCE = [
    ("ch04", "iters_num = 10000", "iters_num = 200"),
    ("ch05", "iters_num = 10000", "iters_num = 200"),
    ("ch06", "max_iterations = 2000", "max_iterations = 100"),
    ("ch06", "max_epochs = 20\n", "max_epochs = 2\n"),
    ("ch06", "max_epochs = 201", "max_epochs = 3"),
    ("ch06", "epochs=301", "epochs=3"),
    ("ch06", "optimization_trial = 100", "optimization_trial = 3"),
    ("ch06", "epocs=50", "epocs=3"),
    ("ch07", "max_epochs = 20", "max_epochs = 2"),
    ("ch07", "#x_train, t_train = x_train[:5000], t_train[:5000]",
     "x_train, t_train = x_train[:300], t_train[:300]"),
    ("ch07", "#x_test, t_test = x_test[:1000], t_test[:1000]",
     "x_test, t_test = x_test[:300], t_test[:300]"),
    ("ch08", "epochs=20", "epochs=1"),
    ("ch08", "network = DeepConvNet()  \n",
     "network = DeepConvNet()  \nx_train, t_train = x_train[:300], t_train[:300]\n"
     "x_test, t_test = x_test[:300], t_test[:300]\n"),
    ("ch08", "#sampled = 1000\n#x_test = x_test[:sampled]\n#t_test = t_test[:sampled]",
     "sampled = 300\nx_test = x_test[:sampled]\nt_test = t_test[:sampled]"),
    ("ch08", "sampled = 10000", "sampled = 300"),
]


@dataclass
class Result:
    name: str
    cells: int
    difference: str = None  # the first one; None: the same outputs
    differences: list = field(default_factory=list)
    note: str = None  # what differs but is not compared (NumPy's floating-point warnings)
    seconds: dict = field(default_factory=dict)  # side -> wall time of the run


def reduce_cells(name, sources, log=print):
    """The cell sources with ``REDUCE``'s substitutions for notebook ``name`` made."""
    out = list(sources)
    for notebook, old, new in REDUCE:
        if notebook != name:
            continue
        cells = [i for i, source in enumerate(out) if old in source]
        for i in cells:
            out[i] = out[i].replace(old, new)
            log(f"{name} cell {i}: {old.strip()!r} -> {new.strip()!r}")
        if not cells:  # a newer book: the list needs updating
            log(f"{name}: {old.strip()!r} not found, not reduced")
    return out


def execute(sources, folder, timeout, fastconv):
    """Run the cells in a fresh kernel in ``folder``: (the notebook's cells, seconds, error)."""
    import nbclient
    import nbformat
    prefix = ([LOAD_CELL] if fastconv else []) + [SEED_CELL]
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(s) for s in prefix + list(sources)]
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     allow_errors=True,
                                     resources={"metadata": {"path": str(folder)}})
    start, error = time.perf_counter(), None
    try:
        client.execute()
    except Exception as exc:  # a timeout or a dead kernel: the cells run so far are kept
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:120]}"
    return notebook.cells[len(prefix):], time.perf_counter() - start, error


def summarize(cell):
    """What is compared of a cell: stream texts, text/plain results, errors, image count."""
    streams, results, errors, images = {}, [], [], 0
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            text = _TEMP_NAME.sub("tmpXXXXXXXX", output["text"])
            streams[output["name"]] = streams.get(output["name"], "") + text
        elif kind == "error":
            errors.append(output["ename"])
        else:
            data = output.get("data", {})
            if any(key.startswith("image/") for key in data):
                images += 1  # counted; its text/plain is the figure's repr
            elif "text/plain" in data:
                results.append(data["text/plain"])
    stderr, fp_warnings = split_fp_warnings(streams.get("stderr", ""))
    return {"stdout": streams.get("stdout", ""), "stderr": stderr, "fp_warnings": fp_warnings,
            "results": "\n".join(results), "errors": errors, "images": images}


def split_fp_warnings(stderr):
    """(stderr without NumPy's floating-point warnings, the sorted kinds of those warnings).

    Such a warning names the operation and the line that overflowed, which on the fastconv
    side is fastconv's code ("overflow encountered in matmul" in a kernel instead of "... in
    dot" in common/layers.py); Python shows it once per line of code, and fastconv's compiled
    kernels (SoftmaxWithLoss's, for one) raise none. So they are not compared: the kinds each
    side showed are reported as a note (:func:`fp_warning_note`)."""
    kinds = set()

    def drop(match):
        kind = _FP_ERROR.match(match.group(2)) if match.group(1) == "RuntimeWarning" else None
        if kind is None:
            return match.group(0)
        kinds.add(kind.group(1))
        return ""
    return _KERNEL_FILE.sub("ipykernel_PID", _WARNING.sub(drop, stderr)), sorted(kinds)


def same_text(a, b, rel=REL, atol=0.0):
    """Equal once numbers are equal to ``rel`` (or ``atol``) and runs of spaces count as one."""
    if _SPACES.sub(" ", _NUMBER.sub("#", a)) != _SPACES.sub(" ", _NUMBER.sub("#", b)):
        return False
    for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b)):
        x, y = float(x), float(y)
        if abs(x - y) > max(rel * max(abs(x), abs(y)), atol):
            return False
    return True


def differences(plain_cells, served_cells, atols=()):
    """A short description of each difference, cell by cell (empty: the same outputs).
    atols: per cell, the absolute tolerance of its numbers (default 0)."""
    found = []
    for i, (a, b) in enumerate(zip(plain_cells, served_cells)):
        sa, sb = summarize(a), summarize(b)
        atol = atols[i] if i < len(atols) else 0.0
        for key in ("stdout", "stderr", "results"):
            if not same_text(sa[key], sb[key], atol=atol):
                found.append(f"cell {i} {key}: {_diff_snippet(sa[key], sb[key], atol)}")
        if sa["errors"] != sb["errors"]:
            found.append(f"cell {i} errors: {sa['errors']} vs {sb['errors']}")
        if sa["images"] != sb["images"]:
            found.append(f"cell {i} images: {sa['images']} vs {sb['images']}")
    if len(plain_cells) != len(served_cells):
        found.append(f"cells: {len(plain_cells)} vs {len(served_cells)}")
    return found


def fp_warning_note(plain_cells, served_cells):
    """None, or which kinds of NumPy floating-point warnings each side showed, if they differ."""
    kinds = [sorted({k for cell in cells for k in summarize(cell)["fp_warnings"]})
             for cells in (plain_cells, served_cells)]
    if kinds[0] == kinds[1]:
        return None
    return f"NumPy warnings (not compared): plain {', '.join(kinds[0]) or 'none'}; " \
           f"fastconv {', '.join(kinds[1]) or 'none'}"


def _diff_snippet(a, b, atol):
    lines_a, lines_b = a.splitlines() or [""], b.splitlines() or [""]
    for la, lb in zip(lines_a + [""] * len(lines_b), lines_b + [""] * len(lines_a)):
        if not same_text(la, lb, atol=atol):
            return f"{la.strip()[:60]!r} vs {lb.strip()[:60]!r}"
    return f"{len(lines_a)} vs {len(lines_b)} lines"


def compare_notebook(book, path, reduce=False, timeout=1800, workdir=None, log=print):
    """Run ``path`` (a notebook in ``book``) on both sides; a :class:`Result`."""
    import nbformat
    book, path = Path(book).resolve(), Path(path).resolve()
    name = path.stem
    sources = [c.source for c in nbformat.read(path, as_version=4).cells
               if c.cell_type == "code"]
    if reduce:
        sources = reduce_cells(name, sources, log)
    result, cells = Result(name, len(sources)), {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tree = Path(tmp) / "book"
        for side in ("plain", "fastconv"):
            shutil.rmtree(tree, ignore_errors=True)
            shutil.copytree(book, tree, ignore=shutil.ignore_patterns("__pycache__", ".git"))
            folder = tree / path.relative_to(book).parent
            cells[side], result.seconds[side], error = execute(
                sources, folder, timeout, side == "fastconv")
            if error:
                result.difference = f"{side} side: {error}"
                return result
    atols = [ATOL_CHECK if any(n == name and text in source for n, text in GRADIENT_CHECKS)
             else 0.0 for source in sources]
    result.differences = differences(cells["plain"], cells["fastconv"], atols)
    result.difference = (result.differences or [None])[0]
    result.note = fp_warning_note(cells["plain"], cells["fastconv"])
    return result


def table(results):
    lines = ["| notebook | cells | same outputs? | first difference | time plain "
             "| time with %load_ext |", "|---|---:|---|---|---:|---:|"]
    for r in results:
        times = [f"{r.seconds[s]:.0f} s" if s in r.seconds else "-" for s in ("plain", "fastconv")]
        same = "yes" if r.difference is None else "**no**"
        diff = (r.difference or r.note or "").replace("|", "\\|")
        lines.append(f"| {r.name} | {r.cells} | {same} | {diff} | {times[0]} | {times[1]} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--book", required=True, help="the book's tree (holds notebooks/)")
    parser.add_argument("--reduce", action="store_true", help="shorten the training loops")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="notebooks by stem: ch05 ...")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per cell")
    parser.add_argument("--backend", default="Agg",
                        help="MPLBACKEND for the kernels; 'inline': the notebook's default")
    args = parser.parse_args(argv)
    paths = sorted((Path(args.book) / "notebooks").glob("*.ipynb"))
    if args.only:
        paths = [p for p in paths if p.stem in args.only]
    if not paths:
        parser.error(f"--book {args.book}: no notebooks/*.ipynb (or none named by --only)")
    if args.backend == "inline":
        os.environ.pop("MPLBACKEND", None)
    else:
        os.environ["MPLBACKEND"] = args.backend
    results = []
    for path in paths:
        results.append(compare_notebook(args.book, path, args.reduce, args.timeout))
        r = results[-1]
        lines = r.differences or [r.difference or "same outputs"]
        print(f"{r.name}: " + "\n    ".join(lines + ([r.note] if r.note else [])), flush=True)
    print(table(results))
    return 1 if any(r.difference for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
