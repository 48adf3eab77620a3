#!/usr/bin/env python
"""fastconv vs the book's code (fastconv's NumPy backend) vs PyTorch on the CPU, in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare.py \
        [--threads 2] [--rounds 3] [--out benchmarks/results] [--quick] [--readme README.md]

Every measurement runs in its own subprocess whose thread settings (``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS``) are in the environment
before Python starts, and which also calls ``numba.set_num_threads`` / ``torch.set_num_threads``
with the same number: all three contenders get the same cores, and a measurement's peak RSS
(``ru_maxrss``) is its own. Subprocesses run one after another, never side by side.

Both modes are measured. Fast mode: fastconv (Numba backend, float32) against PyTorch
(``benchmarks/torch_models.py``, float32) when it is importable, else its columns say "n/a".
Parity mode: fastconv in float64 against the book's algorithms (fastconv's NumPy backend,
float64 like the book, its BLAS threads pinned to the same count with threadpoolctl so that the
baseline does not collapse under load). A training step is what the book's Trainer does per
mini-batch of 100: fastconv ``net.gradient`` + ``optimizer.update``; PyTorch ``zero_grad``,
forward, cross-entropy, ``backward``, ``optimizer.step``. A run's time is the median over N
calls after warm-up calls (so JIT compilation is never timed), except "first training step",
which is exactly the first step of a fresh process whose Numba cache an earlier process
warmed. The whole set is measured ``--rounds`` times, contenders taking turns within a
round; the table shows medians over rounds and the range of the per-round ratios, because on
a shared 2-core machine a noisy spell can slow one run by 30%.

Each workload's FLOPs (``workload_flops``: 2 per multiply-add of its convolutions and
affine layers) divided by the peak GEMM rate measured in the same run with the same threads
(a square sgemm/dgemm, ``GEMM_SIZE``) gives its hardware limit; the table prints fastconv's time
as a multiple of it. The header names the BLAS kernel in use (threadpoolctl's
``architecture``, ``internal_api`` and version) and warns when ``OPENBLAS_CORETYPE`` forces one.

Writes ``<out>/compare.md`` (the table) and ``<out>/compare.png`` (grouped bar charts) and
prints the table; ``--readme FILE`` also rewrites the short table between
``<!-- compare:begin -->`` and ``<!-- compare:end -->`` in FILE. This file is not an asv suite; it imports nothing heavy at module level so
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
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
FRAMEWORKS = ("book", "torch", "fastconv")
BATCH = 100
N_INFER = 10_000
GEMM_SIZE = 2048  # the square GEMM whose rate is the "peak"; --quick uses 1024
README_BEGIN, README_END = "<!-- compare:begin -->", "<!-- compare:end -->"

# workload -> (label, network, optimizer)
WORKLOADS = {
    "simple_step": ("SimpleConvNet training step (Adam, batch 100)", "SimpleConvNet", "Adam"),
    "deep_step": ("DeepConvNet training step (Adam, batch 100)", "DeepConvNet", "Adam"),
    "two_layer_step": ("TwoLayerNet 784-50-10 step (SGD, batch 100)", "TwoLayerNet", "SGD"),
    "inference": ("SimpleConvNet inference, 10k images (batch 100)", "SimpleConvNet", None),
    "first_step": ("first SimpleConvNet step after import (warm JIT cache)", "SimpleConvNet",
                   "Adam"),
    "first_step_cold": ("first SimpleConvNet step on an empty Numba cache", "SimpleConvNet",
                        "Adam"),
    "simple_step64": ("SimpleConvNet training step, float64 (parity mode)", "SimpleConvNet",
                      "Adam"),
    "deep_step64": ("DeepConvNet training step, float64 (parity mode)", "DeepConvNet", "Adam"),
}
FLOAT64_WORKLOADS = ("simple_step64", "deep_step64")  # fastconv in float64, no PyTorch

# (warm-up calls, timed calls) for fastconv/PyTorch and for the book's code. A TwoLayerNet
# step is a tenth of a millisecond: after 5 warm-up steps both contenders still ran their
# next 100 steps 5-13% slower than their steady state (fastconv's pool thread served 1.58
# of the 2 halves a step there, 1.96-2.00 after; PyTorch's first window 250 against 220 us),
# so they warm up for 100 steps and are timed over 1000 (0.3 s a round for PyTorch).
REPEATS = {
    "simple_step": ((3, 30), (1, 10)),
    "deep_step": ((2, 10), (1, 2)),
    "two_layer_step": ((100, 1000), (3, 50)),
    "inference": ((1, 5), (1, 3)),
    "simple_step64": ((3, 30), (1, 10)),
    "deep_step64": ((2, 10), (1, 2)),
}

# The layers that do the arithmetic, per image: ("conv", C, H, W, filters, size, pad, stride,
# pooled after) or ("affine", inputs, outputs). Written from the networks' default
# hyper-parameters (fastconv/nets); tests/test_compare.py checks them against the networks.
ARCHITECTURES = {
    "SimpleConvNet": [("conv", 1, 28, 28, 30, 5, 0, 1, True),
                      ("affine", 30 * 12 * 12, 100), ("affine", 100, 10)],
    "DeepConvNet": [("conv", 1, 28, 28, 16, 3, 1, 1, False),
                    ("conv", 16, 28, 28, 16, 3, 1, 1, True),
                    ("conv", 16, 14, 14, 32, 3, 1, 1, False),
                    ("conv", 32, 14, 14, 32, 3, 2, 1, True),
                    ("conv", 32, 8, 8, 64, 3, 1, 1, False),
                    ("conv", 64, 8, 8, 64, 3, 1, 1, True),
                    ("affine", 64 * 4 * 4, 50), ("affine", 50, 10)],
    "TwoLayerNet": [("affine", 784, 50), ("affine", 50, 10)],
}


def layer_macs(layer):
    """Multiply-adds of one layer's forward pass for one image."""
    if layer[0] == "affine":
        return layer[1] * layer[2]
    _, channels, height, width, filters, size, pad, stride, _ = layer
    out_h = (height + 2 * pad - size) // stride + 1
    out_w = (width + 2 * pad - size) // stride + 1
    return filters * out_h * out_w * channels * size * size


def workload_flops(workload):
    """The arithmetic a workload cannot avoid: 2 FLOPs per multiply-add of its convolutions
    and affine layers. A training step does the forward pass, the weight gradient (as much
    again) and the input gradient (as much again) of every layer but the first, whose input
    gradient nobody needs; inference does N_INFER forward passes. Element-wise work (ReLU,
    pooling, softmax, the optimizer) is left out: it is memory-bound, not FLOPs."""
    network = WORKLOADS[workload][1]
    macs = [layer_macs(layer) for layer in ARCHITECTURES[network]]
    if workload == "inference":
        return 2 * sum(macs) * N_INFER
    return 2 * (3 * sum(macs) - macs[0]) * BATCH


def thread_env(threads):
    env = os.environ.copy()
    for var in THREAD_VARS:
        env[var] = str(threads)
    env.pop("FASTCONV_BACKEND", None)  # the worker selects the backend itself
    env.pop("FASTCONV_MODE", None)  # and the dtype
    return env


def blas_info():
    """The BLAS libraries NumPy loaded: threadpoolctl's internal_api, architecture, version,
    threads."""
    from threadpoolctl import threadpool_info
    keys = ("internal_api", "architecture", "version", "num_threads")
    return [{k: lib.get(k) for k in keys} for lib in threadpool_info()
            if lib.get("user_api") == "blas"]


def forced_kernel_warning(environ=None):
    """A warning line when OPENBLAS_CORETYPE forces OpenBLAS's kernel, else None."""
    environ = os.environ if environ is None else environ
    forced = environ.get("OPENBLAS_CORETYPE")
    if not forced:
        return None
    return (f"**Warning: OPENBLAS_CORETYPE={forced} forces OpenBLAS's {forced} kernel** (and "
            f"OPENBLAS_L2_SIZE={environ.get('OPENBLAS_L2_SIZE', 'unset')}); no user has it "
            "set: measure with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`.")


def machine_name():
    """The CPU's model name, family and widest vector unit (Linux), else what platform knows.

    The family matters: "AMD EPYC" is the whole name on some clouds, and Zen 3/4 (family 25)
    and Zen 5 (family 26) have different peak rates and OpenBLAS kernels."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    flags = fields.get("flags", "").split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{fields['model name']} (family {fields.get('cpu family', '?')}, {vector})"


def gemm_peak(size, number):
    """The best sgemm and dgemm rates (FLOP/s) over `number` square size x size products."""
    import numpy as np
    rng = np.random.default_rng(0)
    rates = {}
    for dtype in ("float32", "float64"):
        a = rng.random((size, size)).astype(dtype)
        b = rng.random((size, size)).astype(dtype)
        out = np.empty((size, size), dtype)
        np.matmul(a, b, out=out)  # warm-up: threads started, pages touched
        best = float("inf")
        for _ in range(number):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
        rates[dtype] = 2.0 * size ** 3 / best
    return rates


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
    if workload == "gemm_peak":
        import numpy as np
        from threadpoolctl import threadpool_limits
        with threadpool_limits(limits=threads, user_api="blas"):
            size, number = spec["repeats"]
            result["rates"] = gemm_peak(size, number)
            result["blas"] = blas_info()
        result["versions"]["numpy"] = np.__version__
        return result
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
        if framework == "book":  # pinned, so that OpenBLAS's threads do not fight under load
            from threadpoolctl import threadpool_limits
            threadpool_limits(limits=threads, user_api="blas")  # holds for the process
        float64 = framework == "book" or workload in FLOAT64_WORKLOADS
        dtype = "float64" if float64 else "float32"
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

    if workload.startswith("first_step"):
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


def run_worker(spec, env):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
                          env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_peak(threads, size, log=print):
    """The best sgemm/dgemm rates at `threads` threads and the BLAS in use, in a fresh process."""
    spec = {"framework": "numpy", "workload": "gemm_peak", "threads": threads,
            "repeats": (size, 5)}
    result = run_worker(spec, thread_env(threads))
    rates = result["rates"]
    log(f"  numpy    gemm_peak {size}^2 {threads} thread(s): sgemm "
        f"{rates['float32'] / 1e9:.0f} GFLOP/s, dgemm {rates['float64'] / 1e9:.0f} GFLOP/s")
    return result


def measure(framework, workload, threads, repeats=None, log=print, note=""):
    spec = {"framework": framework, "workload": workload, "threads": threads,
            "repeats": repeats}
    env = thread_env(threads)
    if workload == "first_step_cold":  # an empty Numba cache: every kernel compiles
        with tempfile.TemporaryDirectory(prefix="fastconv-cold-cache-") as cache:
            env["NUMBA_CACHE_DIR"] = cache
            result = run_worker(spec, env)
    else:
        result = run_worker(spec, env)
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
    runs under 'simple_step@1' and 'simple_step@2', the GEMM peak under ('gemm_peak', 'numpy').

    Each round measures every contender once, one after another, so a spell of machine noise
    lands in one round of each contender instead of in every run of one of them; the table
    takes medians over rounds and shows the spread of the per-round ratios.
    """
    frameworks = [f for f in FRAMEWORKS if with_torch or f != "torch"]
    results = {}
    for round_index in range(rounds):
        log(f"round {round_index + 1} of {rounds}")
        order = frameworks if round_index % 2 == 0 else frameworks[::-1]
        results.setdefault(("gemm_peak", "numpy"), []).append(
            measure_peak(threads, GEMM_SIZE // 2 if quick else GEMM_SIZE, log))
        for workload, (fast_rep, book_rep) in REPEATS.items():
            for framework in order:
                if framework == "torch" and workload in FLOAT64_WORKLOADS:
                    continue  # parity mode: fastconv float64 against the book's code only
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
    # a fresh install: fastconv's first step compiling every kernel, once (about 10 s)
    results["first_step_cold", "fastconv"] = [measure("fastconv", "first_step_cold", threads,
                                                      log=log)]
    return results


# the targets of issue #16 (2 threads, native kernels)
RATIO_TARGETS = {"simple_step": 0.25, "deep_step": 0.6, "two_layer_step": 0.4, "inference": 0.1}
BOOK_SPEEDUP_TARGET = 10.0  # parity mode: at least this many times faster than the book's code
LIMIT_TARGET = 2.5  # fast mode: within this multiple of the hardware limit
FIRST_STEP_TARGETS = {"first_step": 0.5, "first_step_cold": 10.0}  # seconds
SCALING_TARGET = 1.7


def peak_rates(results):
    """{dtype: best GEMM FLOP/s over the rounds}, empty when the peak was not measured."""
    runs = results.get(("gemm_peak", "numpy"), [])
    return {dtype: max(r["rates"][dtype] for r in runs) for dtype in ("float32", "float64")
            } if runs else {}


def build_rows(results):
    """Table rows: dicts with label, kind ('s', 'x' or 'MB'), values per framework (median over
    rounds), the fastconv/PyTorch ratio (median of the per-round ratios) and its range, the
    book/fastconv speed-up, and for workloads with FLOPs the hardware limit (the FLOPs at the
    measured peak GEMM rate of the workload's dtype) and fastconv's time as a multiple of it."""
    def per_round(key, framework, field="seconds"):
        return [r[field] for r in results.get((key, framework), [])]

    def speedups(framework):
        return [one / two for one, two in zip(per_round("simple_step@1", framework),
                                                per_round("simple_step@2", framework))]

    peaks = peak_rates(results)
    rows = []
    for workload in ("simple_step", "deep_step", "two_layer_step", "inference",
                     "simple_step64", "deep_step64", "first_step", "first_step_cold"):
        row = {"label": WORKLOADS[workload][0], "kind": "s", "workload": workload,
               "rounds": {f: per_round(workload, f) for f in FRAMEWORKS}}
        if workload in RATIO_TARGETS:
            row["target"] = ("ratio", RATIO_TARGETS[workload])
        elif workload in FLOAT64_WORKLOADS:
            row["target"] = ("book_speedup", BOOK_SPEEDUP_TARGET)
        else:
            row["target"] = ("fastconv_max", FIRST_STEP_TARGETS[workload])
        if not workload.startswith("first_step"):
            row["flops"] = workload_flops(workload)
            dtype = "float64" if workload in FLOAT64_WORKLOADS else "float32"
            row["limit"] = row["flops"] / peaks[dtype] if peaks else None
        rows.append(row)
    rows.append({"label": "SimpleConvNet step, 2 threads vs 1 thread speed-up, paired in one "
                          "process", "short": "paired in one process (steps alternate)",
                 "kind": "x", "target": ("fastconv_min", SCALING_TARGET),
                 "rounds": {f: per_round("paired_scaling", f, "speedup") for f in FRAMEWORKS}})
    rows.append({"label": "SimpleConvNet step, 2 threads vs 1 thread speed-up, separate "
                          "processes", "short": "separate processes", "kind": "x",
                 "target": None,
                 "rounds": {f: speedups(f) for f in FRAMEWORKS}})
    for workload, label in (("simple_step", "peak RSS, SimpleConvNet training steps"),
                            ("inference", "peak RSS, SimpleConvNet 10k inference")):
        rows.append({"label": label, "short": label.replace("peak RSS, ", ""), "kind": "MB",
                     "target": None,
                     "rounds": {f: per_round(workload, f, "maxrss_mb") for f in FRAMEWORKS}})
    for row in rows:
        _judge(row)
    return rows


def _median_ratio(numerators, denominators):
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return (statistics.median(ratios), (min(ratios), max(ratios))) if ratios else (None, None)


def _judge(row):
    """Fill in a row's medians, ratios and whether its targets are met."""
    rounds = row["rounds"]
    row["values"] = {f: statistics.median(v) if v else None for f, v in rounds.items()}
    row["ratio"], row["ratio_range"] = _median_ratio(rounds["fastconv"], rounds["torch"])
    row["book_speedup"] = (_median_ratio(rounds["book"], rounds["fastconv"])[0]
                           if "flops" in row else None)  # not for first steps
    fast = row["values"]["fastconv"]
    limit = row.get("limit")
    row["of_limit"] = None if limit is None or fast is None else fast / limit
    row["limit_met"] = (None if row["of_limit"] is None or row.get("workload") in
                        FLOAT64_WORKLOADS else row["of_limit"] <= LIMIT_TARGET)
    kind, bound = row["target"] or (None, None)
    if kind == "ratio":
        row["target_text"] = f"≤ {bound:g}× PyTorch"
        row["met"] = None if row["ratio"] is None else row["ratio"] <= bound
    elif kind == "book_speedup":
        row["target_text"] = f"≥ {bound:g}× faster than the book"
        row["met"] = None if row["book_speedup"] is None else row["book_speedup"] >= bound
    elif kind == "fastconv_max":
        row["target_text"] = f"≤ {bound:g} s"
        row["met"] = None if fast is None else fast <= bound
    elif kind == "fastconv_min":
        row["target_text"] = f"≥ {bound:g}×"
        row["met"] = None if fast is None else fast >= bound
    else:
        row["target_text"], row["met"] = "—", None


def fmt_value(v, kind):
    if v is None:
        return "n/a"
    if kind == "s":
        return fmt_seconds(v)
    if kind == "x":
        return f"{v:.2f}×"
    return f"{v:.0f} MB"


def fmt_flops(flops):
    return "—" if flops is None else f"{flops / 1e9:.3g} G"


def _yes_no(met, has_target=True):
    return {True: "yes", False: "**no**", None: "n/a" if has_target else "—"}[met]


def _limit_cell(row):
    if row.get("limit") is None:
        return "—"
    multiple = "n/a" if row["of_limit"] is None else f"{row['of_limit']:.1f}×"
    judged = "" if row["limit_met"] is None else f" ({_yes_no(row['limit_met'])})"
    return f"{fmt_seconds(row['limit'])}; fastconv {multiple}{judged}"


def markdown(rows, header_lines):
    out = list(header_lines) + [
        "",
        "| workload | book's code (NumPy backend, float64) | PyTorch | fastconv "
        "| fastconv/PyTorch | per round | × faster than the book | FLOPs "
        f"| hardware limit; fastconv's multiple (≤ {LIMIT_TARGET:g}×?) | target | met? |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for row in rows:
        v = row["values"]
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.2f}"
        low_high = row["ratio_range"]
        spread = "n/a" if low_high is None else "{:.2f}–{:.2f}".format(*low_high)
        book = "—" if row["book_speedup"] is None else f"{row['book_speedup']:.1f}×"
        out.append(f"| {row['label']} | {fmt_value(v['book'], row['kind'])} "
                   f"| {fmt_value(v['torch'], row['kind'])} "
                   f"| {fmt_value(v['fastconv'], row['kind'])} | {ratio} | {spread} | {book} "
                   f"| {fmt_flops(row.get('flops'))} | {_limit_cell(row)} "
                   f"| {row['target_text']} | {_yes_no(row['met'], bool(row['target']))} |")
    return "\n".join(out) + "\n"


def short_markdown(rows, header_lines, chart=None):
    """The README's table: the timed workloads and the two ratios a user asks about; the
    hardware limits and the targets stay in the full table. ``chart``: an image to show under
    it (a path relative to the README)."""
    out = list(header_lines) + [
        "",
        "| workload | the book's code | PyTorch | fastconv | fastconv vs the book "
        "| fastconv vs PyTorch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row["kind"] != "s" or row["workload"].startswith("first_step"):
            continue
        v = row["values"]
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}× the time"
        book = "—" if row["book_speedup"] is None else f"{row['book_speedup']:.1f}× faster"
        out.append(f"| {row['label']} | {fmt_value(v['book'], row['kind'])} "
                   f"| {fmt_value(v['torch'], row['kind'])} "
                   f"| {fmt_value(v['fastconv'], row['kind'])} | {book} | {ratio} |")
    if chart:
        out += ["", f"![fastconv vs the book's code vs PyTorch]({chart})"]
    return "\n".join(out) + "\n"


def run_command(argv):
    """The command line of this run, as a reader would type it to repeat it."""
    unset = "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE " if forced_kernel_warning() is None \
        else ""
    return (unset + "python benchmarks/compare.py " + " ".join(
        argv if argv is not None else sys.argv[1:])).strip()


def short_header(args, argv, started):
    """The README block's one paragraph: when, where and how it was measured."""
    text = (f"Measured {started:%Y-%m-%d} by `{run_command(argv)}` on {machine_name()}, "
            f"{args.threads} threads for every contender, batch 100 (load average "
            f"{args.load_at_start:.1f} at the start). fastconv and PyTorch run float32 (fast "
            "mode), the book's code float64, except in the two float64 rows (parity mode). "
            "Medians over rounds; the full table, with each workload's hardware limit: "
            "[docs/compare.md](docs/compare.md).")
    return [_wrap(text, width=92)]


def replace_readme_block(text, block):
    """`text` with what lies between README_BEGIN and README_END replaced by `block`."""
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin or text.count(README_BEGIN) != 1 or text.count(README_END) != 1:
        raise ValueError(f"--readme: the file must hold one {README_BEGIN} line followed by one "
                         f"{README_END} line")
    head = text[:begin + len(README_BEGIN)]
    return head + "\n" + block.rstrip("\n") + "\n" + text[end:]


def rewrite_readme(path, block):
    """Replace the compare block of the file at `path`; the file is untouched on error."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new_text = replace_readme_block(text, block)
    sys.path.insert(0, os.path.dirname(HERE))
    from fastconv.fileio import atomic_write
    with atomic_write(path, "wb") as f:
        f.write(new_text.encode("utf-8"))


def chart(rows, path, title):
    """Write the chart of ``rows`` as a PNG file at ``path``."""
    import matplotlib.pyplot as plt
    fig = figure(rows, title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def figure(rows, title):
    """The chart of ``rows``: the times (log scale) across the top; peak memory and the thread
    scaling, with its target line, below. One legend under the panels, where it covers no bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = {"book": "book's code (NumPy backend, float64)", "torch": "PyTorch (float32)",
             "fastconv": "fastconv (Numba; float32, float64 in the parity rows)"}
    colors = {"book": "#9e9e9e", "torch": "#ee4c2c", "fastconv": "#1f77b4"}
    fig = plt.figure(figsize=(15, 10), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[1.2, 1])
    panels = [(fig.add_subplot(grid[0, :]), "s", "time per workload (s, log scale)", None),
              (fig.add_subplot(grid[1, 0]), "MB", "peak RSS (MB)", "peak memory"),
              (fig.add_subplot(grid[1, 1]), "x", "speed-up (×)",
               "SimpleConvNet step: 2 threads against 1 thread")]
    width = 0.27
    for ax, kind, ylabel, panel_title in panels:
        panel = [r for r in rows if r["kind"] == kind]
        pos = np.arange(len(panel))
        if kind == "s":
            ax.set_yscale("log")  # before the bars, so an "n/a" sits at the log axis' floor
        for i, f in enumerate(FRAMEWORKS):
            heights = [r["values"][f] if r["values"][f] is not None else 0.0 for r in panel]
            bars = ax.bar(pos + (i - 1) * width, heights, width, label=names[f], color=colors[f])
            for bar, r in zip(bars, panel):
                v = r["values"][f]
                text = "n/a" if v is None else fmt_value(v, kind).replace(" ", "\u2009")
                y = bar.get_height() if v else (ax.get_ylim()[0] if kind == "s" else 0.0)
                # on white, so that the target line and the grid do not cross the digits
                ax.annotate(text, (bar.get_x() + bar.get_width() / 2, y), ha="center",
                            va="bottom", fontsize=7, rotation=90, xytext=(0, 2),
                            textcoords="offset points",
                            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})
        ax.set_xticks(pos)
        ax.set_xticklabels([_wrap(r.get("short", r["label"])) for r in panel], fontsize=8)
        ax.set_ylabel(ylabel)
        if panel_title:
            ax.set_title(panel_title, fontsize=9)
        ax.margins(y=0.25)
        ax.grid(axis="y", alpha=0.3, which="both" if kind == "s" else "major")
        if kind == "x":
            target = ax.axhline(SCALING_TARGET, color="k", ls="--", lw=0.8, zorder=1,
                                label=f"target: fastconv ≥ {SCALING_TARGET:g}× (paired in one "
                                      "process)")
    handles, labels = panels[0][0].get_legend_handles_labels()
    fig.legend(handles + [target], labels + [target.get_label()], loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


def _wrap(text, width=22):
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def report_header(results, args, argv, started, versions):
    """The lines above the table: what ran, where, when, on which BLAS kernel, at what peak."""
    command = run_command(argv)
    peak_runs = results.get(("gemm_peak", "numpy"), [])
    blas = "; ".join(f"{lib['internal_api']} {lib['version']} kernel {lib['architecture']}"
                     for lib in (peak_runs[0]["blas"] if peak_runs else [])) or "unknown"
    peaks = peak_rates(results)
    size = GEMM_SIZE // 2 if args.quick else GEMM_SIZE
    peak_text = (f"peak GEMM ({size}², best of 5 per round, {args.threads} thread(s)): sgemm "
                 f"{peaks['float32'] / 1e9:.0f} GFLOP/s, dgemm {peaks['float64'] / 1e9:.0f} "
                 "GFLOP/s" if peaks else "peak GEMM not measured")
    lines = [
        f"fastconv vs the book's code vs PyTorch, {started:%Y-%m-%d %H:%M} "
        f"{started.astimezone():%Z}, `{command.strip()}`",
        "",
        f"{machine_name()}, {os.cpu_count()} CPUs (load average at the start "
        f"{args.load_at_start:.1f}), {args.threads} thread(s) for every contender; BLAS: "
        f"{blas}; {peak_text}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + f"; Python {platform.python_version()}. Each of {args.rounds} round(s) runs every "
        "contender once; a time is the median over rounds of each run's median after warm-up, "
        "fastconv/PyTorch is the median of the per-round ratios and \"per round\" their "
        "range. The book's code is fastconv's NumPy backend in float64 with its BLAS pinned to "
        "the same threads; PyTorch runs float32; fastconv runs float32 (fast mode) except in "
        "the float64 (parity mode) rows. The hardware limit is the FLOPs (convolutions and "
        "affine layers) at the peak GEMM rate of the workload's dtype.",
    ]
    warning = forced_kernel_warning()
    if warning:
        lines += ["", warning]
    return lines


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
    parser.add_argument("--readme", metavar="FILE",
                        help=f"also rewrite the short table between {README_BEGIN} and "
                             f"{README_END} in FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    for var in THREAD_VARS:  # this process measures nothing, but keep it to the same budget
        os.environ[var] = str(args.threads)
    with_torch = not args.no_torch and torch_available()
    started = datetime.datetime.now()
    args.load_at_start = os.getloadavg()[0]
    print(f"threads: {args.threads}; PyTorch: {'yes' if with_torch else 'not importable, n/a'}")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.readme:  # fail now, not after half an hour of measuring
        with open(args.readme, encoding="utf-8") as f:
            try:
                replace_readme_block(f.read(), "")
            except ValueError as error:
                parser.error(str(error))
    results = run_all(args.threads, args.quick, with_torch, args.rounds)
    rows = build_rows(results)

    versions = {}
    for runs in results.values():
        for r in runs:
            versions.update(r["versions"])
    header = report_header(results, args, argv, started, versions)
    table = markdown(rows, header)
    if args.readme:
        chart_path = os.path.relpath(os.path.join(args.out, "compare.png"),
                                     os.path.dirname(os.path.abspath(args.readme)))
        rewrite_readme(args.readme, short_markdown(
            rows, short_header(args, argv, started), chart_path.replace(os.sep, "/")))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "compare.md"), "w", encoding="utf-8") as f:
        f.write(table)
    chart(rows, os.path.join(args.out, "compare.png"),
          f"fastconv vs book's code vs PyTorch — {args.threads} thread(s), {started:%Y-%m-%d}")
    print()
    print(table)
    print(f"wrote {os.path.join(args.out, 'compare.md')} and "
          f"{os.path.join(args.out, 'compare.png')} "
          f"{'and ' + args.readme + ' ' if args.readme else ''}"
          f"in {(datetime.datetime.now() - started).total_seconds():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
