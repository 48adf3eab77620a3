#!/usr/bin/env python
"""fastconv vs the book's code (fastconv's NumPy backend) vs PyTorch on the CPU, in one run.

    python benchmarks/compare.py [--threads 2] [--rounds 3] [--out benchmarks/results] [--quick]

Every measurement runs in its own subprocess whose thread settings (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS``) are in the environment
before Python starts, and which also calls ``numba.set_num_threads`` / ``torch.set_num_threads``
with the same number: all three contenders get the same cores, and a measurement's peak RSS
(``ru_maxrss``) is its own. Subprocesses run one after another, never side by side.

Contenders: fastconv (Numba backend, float32); the book's algorithms (fastconv's NumPy
backend, float64 like the book); PyTorch (``benchmarks/torch_models.py``, float32) when it is
importable, else its columns say "n/a". A training step is what the book's Trainer does per
mini-batch of 100: fastconv ``net.gradient`` + ``optimizer.update``; PyTorch ``zero_grad``,
forward, cross-entropy, ``backward``, ``optimizer.step``. A run's time is the median over N
calls after warm-up calls (so JIT compilation is never timed), except "first training step",
which is exactly the first step of a fresh process whose Numba cache an earlier process
warmed. The whole set is measured ``--rounds`` times, contenders taking turns within a
round; the table shows medians over rounds and the range of the per-round ratios, because on
a shared 2-core machine a noisy spell can slow one run by 30%.

Writes ``<out>/compare.md`` (the table) and ``<out>/compare.png`` (grouped bar charts) and
prints the table. This file is not an asv suite; it imports nothing heavy at module level so
that asv's discovery of ``benchmarks/`` can import it harmlessly.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
FRAMEWORKS = ("book", "torch", "fastconv")
BATCH = 100
N_INFER = 10_000

# workload -> (label, network, optimizer)
WORKLOADS = {
    "simple_step": ("SimpleConvNet training step (Adam, batch 100)", "SimpleConvNet", "Adam"),
    "deep_step": ("DeepConvNet training step (Adam, batch 100)", "DeepConvNet", "Adam"),
    "two_layer_step": ("TwoLayerNet 784-50-10 step (SGD, batch 100)", "TwoLayerNet", "SGD"),
    "inference": ("SimpleConvNet inference, 10k images (batch 100)", "SimpleConvNet", None),
    "first_step": ("first SimpleConvNet step after import (warm JIT cache)", "SimpleConvNet",
                   "Adam"),
}

# (warm-up calls, timed calls) for fastconv/PyTorch and for the book's code
REPEATS = {
    "simple_step": ((3, 30), (1, 10)),
    "deep_step": ((2, 10), (1, 2)),
    "two_layer_step": ((5, 100), (3, 50)),
    "inference": ((1, 5), (1, 3)),
}


def thread_env(threads):
    env = os.environ.copy()
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.pop("FASTCONV_BACKEND", None)  # the worker selects the backend itself
    return env


# --- the worker: one measurement in a fresh process ----------------------------------------

def _data(network, n, dtype, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    shape = (784,) if network == "TwoLayerNet" else (1, 28, 28)
    return rng.random((n,) + shape).astype(dtype), rng.integers(0, 10, n)


def _fastconv_step(network, optimizer, dtype):
    import numpy as np
    from fastconv import nets
    from fastconv import optimizer as optimizers
    np.random.seed(0)
    if network == "TwoLayerNet":
        net = nets.TwoLayerNet(784, 50, 10, dtype=dtype)
    else:
        net = getattr(nets, network)(dtype=dtype)
    opt = getattr(optimizers, optimizer)()
    x, t = _data(network, BATCH, dtype)

    def step():
        grads = net.gradient(x, t)
        opt.update(net.params, grads)
    return step


def _torch_step(network, optimizer):
    import numpy as np
    import torch_models
    x, t = _data(network, BATCH, np.float32)
    return torch_models.TrainStep(network, optimizer, x, t).run


def _inference(framework, dtype):
    import numpy as np
    x, t = _data("SimpleConvNet", N_INFER, dtype)
    if framework == "torch":
        import torch_models
        model = torch_models.simple_convnet()
        return lambda: torch_models.accuracy(model, x, t, BATCH)
    from fastconv.nets import SimpleConvNet
    np.random.seed(0)
    net = SimpleConvNet(dtype=dtype)
    return lambda: net.accuracy(x, t, batch_size=BATCH)


def _median_time(fn, warmup, number):
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(number):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds


def _thread_setter(framework):
    """A function that sets the contender's thread count from inside its process."""
    if framework == "torch":
        import torch
        return torch.set_num_threads
    import numba
    if framework == "fastconv":
        return numba.set_num_threads
    from threadpoolctl import ThreadpoolController
    blas = ThreadpoolController().select(user_api="blas")

    def set_book_threads(n):  # the NumPy backend's only threads are BLAS's
        numba.set_num_threads(n)
        blas.limit(limits=n)
    return set_book_threads


def _paired_speedup(fn, set_threads, threads, warmup, number):
    """1 thread against `threads`, measured in pairs a few milliseconds apart.

    Each pair times one step on 1 thread and one on `threads` (which goes first alternates),
    each after an untimed step at that count; a pair's ratio is taken while the host is in
    one state, so a slow spell of the shared machine moves both of its steps. Returns the
    median of the pair ratios and the median time at each count.
    """
    for n in (1, threads):
        set_threads(n)
        for _ in range(warmup):
            fn()
    times = {1: [], threads: []}
    for i in range(number):
        for n in ((1, threads) if i % 2 == 0 else (threads, 1)):
            set_threads(n)
            fn()
            start = time.perf_counter()
            fn()
            times[n].append(time.perf_counter() - start)
    ratios = [one / many for one, many in zip(times[1], times[threads])]
    return {"speedup": statistics.median(ratios), "seconds": statistics.median(times[threads]),
            "seconds_1": statistics.median(times[1])}


def worker(spec):
    """Run one measurement described by ``spec`` and return its result as a dict."""
    start = time.perf_counter()
    framework, workload, threads = spec["framework"], spec["workload"], spec["threads"]
    sys.path.insert(0, HERE)
    result = {"spec": spec, "versions": {}}
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        result["versions"]["torch"] = torch.__version__
        dtype = "float32"
    else:
        import fastconv  # before numba starts its threads: fastconv picks the threading layer
        import numba
        numba.set_num_threads(threads)
        fastconv.use_backend("numba" if framework == "fastconv" else "numpy")
        result["versions"].update(fastconv=fastconv.__version__, numba=numba.__version__)
        dtype = "float32" if framework == "fastconv" else "float64"
    import numpy as np
    result["versions"]["numpy"] = np.__version__
    result["import_s"] = time.perf_counter() - start
    dtype = np.dtype(dtype).type

    label, network, optimizer = WORKLOADS["simple_step" if workload == "paired_scaling"
                                          else workload]
    if workload == "inference":
        fn = _inference(framework, dtype)
    elif framework == "torch":
        fn = _torch_step(network, optimizer)
    else:
        fn = _fastconv_step(network, optimizer, dtype)

    if workload == "first_step":
        t0 = time.perf_counter()
        fn()
        result["seconds"] = time.perf_counter() - t0
        result["all"] = [result["seconds"]]
    elif workload == "paired_scaling":
        warmup, number = spec["repeats"]
        result.update(_paired_speedup(fn, _thread_setter(framework), threads, warmup, number))
    else:
        warmup, number = spec["repeats"]
        result["seconds"], result["all"] = _median_time(fn, warmup, number)
    import resource
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


# --- the driver ----------------------------------------------------------------------------

def torch_available():
    probe = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True)
    return probe.returncode == 0


def measure(framework, workload, threads, repeats=None, log=print, note=""):
    spec = {"framework": framework, "workload": workload, "threads": threads,
            "repeats": repeats}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          env=thread_env(threads), capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    paired = (f"; 1 thread {fmt_seconds(result['seconds_1'])}, paired speed-up "
              f"{result['speedup']:.2f}x" if "speedup" in result else "")
    log(f"  {framework:8s} {workload:15s} {threads} thread(s): "
        f"{fmt_seconds(result['seconds'])}{paired}  (peak RSS {result['maxrss_mb']:.0f} MB){note}")
    return result


def fmt_seconds(s):
    if s is None:
        return "n/a"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def run_all(threads, quick, with_torch, rounds=3, log=print):
    """{(workload, framework): [result dict per round]}, the 1-thread and 2-thread SimpleConvNet
    runs under 'simple_step@1' and 'simple_step@2'.

    Each round measures every contender once, one after another, so a spell of machine noise
    lands in one round of each contender instead of in every run of one of them; the table
    takes medians over rounds and shows the spread of the per-round ratios.
    """
    frameworks = [f for f in FRAMEWORKS if with_torch or f != "torch"]
    results = {}
    for round_index in range(rounds):
        log(f"round {round_index + 1} of {rounds}")
        order = frameworks if round_index % 2 == 0 else frameworks[::-1]
        for workload, (fast_rep, book_rep) in REPEATS.items():
            for framework in order:
                warmup, number = book_rep if framework == "book" else fast_rep
                if quick:
                    number = max(2, number // 5)
                results.setdefault((workload, framework), []).append(
                    measure(framework, workload, threads, (warmup, number), log))
        # thread scaling of the SimpleConvNet step: 1 thread against 2 threads
        for framework in order:
            warmup, number = REPEATS["simple_step"][1 if framework == "book" else 0]
            if quick:
                number = max(2, number // 5)
            for n in (1, 2):
                results.setdefault(("simple_step@%d" % n, framework), []).append(
                    results["simple_step", framework][-1] if n == threads else
                    measure(framework, "simple_step", n, (warmup, number), log))
            if threads > 1:
                results.setdefault(("paired_scaling", framework), []).append(
                    measure(framework, "paired_scaling", threads,
                            (warmup, max(2, number * 2 // 3)), log))
    # first step: one subprocess warms the Numba cache (and the OS file cache), then one
    # fresh subprocess per round
    for framework in frameworks:
        measure(framework, "first_step", threads, log=log, note="  [cache warm-up, not used]")
        results["first_step", framework] = [measure(framework, "first_step", threads, log=log)
                                            for _ in range(rounds)]
    return results


def build_rows(results):
    """Table rows: dicts with label, kind ('s', 'x' or 'MB'), values per framework (median over
    rounds), the fastconv/PyTorch ratio (median of the per-round ratios) and its range."""
    def per_round(key, framework, field="seconds"):
        return [r[field] for r in results.get((key, framework), [])]

    def speedups(framework):
        return [one / two for one, two in zip(per_round("simple_step@1", framework),
                                                per_round("simple_step@2", framework))]

    rows = []
    ratio_targets = {"simple_step": 0.5, "deep_step": 1.0, "two_layer_step": 0.7,
                     "inference": 0.5}
    for workload in ("simple_step", "deep_step", "two_layer_step", "inference", "first_step"):
        row = {"label": WORKLOADS[workload][0], "kind": "s",
               "rounds": {f: per_round(workload, f) for f in FRAMEWORKS}}
        row["target"] = (("ratio", ratio_targets[workload]) if workload in ratio_targets
                         else ("fastconv_max", 2.0))
        rows.append(row)
    rows.append({"label": "SimpleConvNet step, 2 threads vs 1 thread speed-up, paired in one "
                          "process", "kind": "x", "target": ("fastconv_min", 1.7),
                 "rounds": {f: per_round("paired_scaling", f, "speedup") for f in FRAMEWORKS}})
    rows.append({"label": "SimpleConvNet step, 2 threads vs 1 thread speed-up, separate "
                          "processes", "kind": "x", "target": None,
                 "rounds": {f: speedups(f) for f in FRAMEWORKS}})
    for workload, label in (("simple_step", "peak RSS, SimpleConvNet training steps"),
                            ("inference", "peak RSS, SimpleConvNet 10k inference")):
        rows.append({"label": label, "kind": "MB", "target": None,
                     "rounds": {f: per_round(workload, f, "maxrss_mb") for f in FRAMEWORKS}})
    for row in rows:
        row["values"] = {f: statistics.median(v) if v else None for f, v in row["rounds"].items()}
        ratios = [a / b for a, b in zip(row["rounds"]["fastconv"], row["rounds"]["torch"])]
        row["ratio"] = statistics.median(ratios) if ratios else None
        row["ratio_range"] = (min(ratios), max(ratios)) if ratios else None
        fast = row["values"]["fastconv"]
        kind, limit = row["target"] or (None, None)
        if kind == "ratio":
            row["target_text"] = f"≤ {limit:g}× PyTorch"
            row["met"] = None if row["ratio"] is None else row["ratio"] <= limit
        elif kind == "fastconv_max":
            row["target_text"] = f"≤ {limit:g} s"
            row["met"] = None if fast is None else fast <= limit
        elif kind == "fastconv_min":
            row["target_text"] = f"≥ {limit:g}×"
            row["met"] = None if fast is None else fast >= limit
        else:
            row["target_text"], row["met"] = "—", None
    return rows


def fmt_value(v, kind):
    if v is None:
        return "n/a"
    if kind == "s":
        return fmt_seconds(v)
    if kind == "x":
        return f"{v:.2f}×"
    return f"{v:.0f} MB"


def markdown(rows, header_lines):
    out = list(header_lines) + [
        "",
        "| workload | book's code (NumPy backend) | PyTorch | fastconv | fastconv/PyTorch "
        "| per round | target | met? |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        v = row["values"]
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        low_high = row["ratio_range"]
        spread = "n/a" if low_high is None else "{:.2f}–{:.2f}".format(*low_high)
        met = {True: "yes", False: "**no**", None: "n/a" if row["target"] else "—"}[row["met"]]
        out.append(f"| {row['label']} | {fmt_value(v['book'], row['kind'])} "
                   f"| {fmt_value(v['torch'], row['kind'])} "
                   f"| {fmt_value(v['fastconv'], row['kind'])} | {ratio} | {spread} "
                   f"| {row['target_text']} | {met} |")
    return "\n".join(out) + "\n"


def chart(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = {"book": "book's code (NumPy backend, float64)", "torch": "PyTorch (float32)",
             "fastconv": "fastconv (Numba, float32)"}
    colors = {"book": "#9e9e9e", "torch": "#ee4c2c", "fastconv": "#1f77b4"}
    panels = [("s", "time per workload (s, log scale)", True),
              ("MB", "peak RSS (MB)", False),
              ("x", "speed-up, 2 threads vs 1", False)]
    fig, axes = plt.subplots(1, 3, figsize=(17, 6.5),
                             gridspec_kw={"width_ratios": [5, 2, 1.3]})
    width = 0.27
    for ax, (kind, ylabel, log) in zip(axes, panels):
        panel = [r for r in rows if r["kind"] == kind]
        pos = np.arange(len(panel))
        for i, f in enumerate(FRAMEWORKS):
            heights = [r["values"][f] if r["values"][f] is not None else 0.0 for r in panel]
            bars = ax.bar(pos + (i - 1) * width, heights, width, label=names[f], color=colors[f])
            for bar, r in zip(bars, panel):
                v = r["values"][f]
                text = "n/a" if v is None else fmt_value(v, kind).replace(" ", "\u2009")
                y = bar.get_height() if v else (ax.get_ylim()[0] if log else 0.0)
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, y), ha="center",
                            va="bottom", fontsize=7, rotation=90, xytext=(0, 2),
                            textcoords="offset points")
        if log:
            ax.set_yscale("log")
        ax.set_xticks(pos)
        ax.set_xticklabels([_wrap(r["label"]) for r in panel], fontsize=8)
        ax.set_ylabel(ylabel)
        ax.margins(y=0.25)
        ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
        if kind == "x":
            ax.axhline(1.7, color="k", ls="--", lw=0.8)
    axes[0].legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _wrap(text, width=22):
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for every contender (default 2)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="folder for compare.md and compare.png")
    parser.add_argument("--quick", action="store_true",
                        help="a fifth of the repeats, one first-step run: to try the script")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of measurements, every contender once per round (default 3)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    for var in THREAD_VARS:  # this process measures nothing, but keep it to the same budget
        os.environ[var] = str(args.threads)
    with_torch = not args.no_torch and torch_available()
    started = datetime.datetime.now()
    print(f"threads: {args.threads}; PyTorch: {'yes' if with_torch else 'not importable, n/a'}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    results = run_all(args.threads, args.quick, with_torch, args.rounds)
    rows = build_rows(results)

    versions = {}
    for runs in results.values():
        for r in runs:
            versions.update(r["versions"])
    command = "python benchmarks/compare.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    header = [
        f"fastconv vs the book's code vs PyTorch, {started:%Y-%m-%d %H:%M}, "
        f"`{command.strip()}`",
        "",
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.threads} thread(s) for every contender; "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + f"; Python {platform.python_version()}. Each of {args.rounds} round(s) runs every "
        "contender once; a time is the median over rounds of each run's median after warm-up, "
        "fastconv/PyTorch is the median of the per-round ratios and \"per round\" their "
        "range. The book's code is fastconv's NumPy backend in float64, PyTorch and fastconv "
        "run float32.",
    ]
    table = markdown(rows, header)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "compare.md"), "w", encoding="utf-8") as f:
        f.write(table)
    chart(rows, os.path.join(args.out, "compare.png"),
          f"fastconv vs book's code vs PyTorch — {args.threads} thread(s), {started:%Y-%m-%d}")
    print()
    print(table)
    print(f"wrote {os.path.join(args.out, 'compare.md')} and "
          f"{os.path.join(args.out, 'compare.png')} "
          f"in {(datetime.datetime.now() - started).total_seconds():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
