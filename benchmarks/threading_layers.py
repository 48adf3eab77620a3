#!/usr/bin/env python
"""Numba threading layers and the parallel-region lock, compared in one run.

    python benchmarks/threading_layers.py [--rounds 3] [--variants workqueue+lock,tbb-nolock]

Each variant runs in its own subprocess (a threading layer is fixed when Numba starts), the
variants taking turns within a round, on 2 Numba threads. A variant is a layer (workqueue,
tbb, omp; tbb needs the ``tbb`` package, and its library folder on LD_LIBRARY_PATH) with
fastconv's parallel-region lock (``+lock``, what fastconv does) or without it (``-nolock``,
every thread runs the parallel build; safe only on tbb and omp). Timed, in ms: a SimpleConvNet
float32 step (gradient + Adam, batch 100) in one thread, then two Python threads each
stepping its own network (wall time per pair of steps), and Relu on a million elements in
one thread and in two at once. Prints each run and the medians over rounds as ratios to
workqueue+lock. Not an asv suite: it imports nothing heavy at module level.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

VARIANTS = ["workqueue+lock", "tbb+lock", "tbb-nolock", "omp+lock", "omp-nolock"]
MILLION = 1 << 20


def _timed(fn, reps):
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) * 1e3 / reps


def _in_two_threads(fns, reps):
    def run(fn):
        for _ in range(reps):
            fn()
    threads = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return (time.perf_counter() - start) * 1e3 / reps


def measure(variant):
    """The timings of one variant, in this process."""
    import numba
    import numpy as np

    from fastconv.kernels.jit import dispatch
    from fastconv.layers import Relu
    from fastconv.nets import SimpleConvNet
    from fastconv.optimizer import Adam
    if variant.endswith("-nolock"):
        class NoLock:  # every caller gets the parallel build
            def acquire(self, blocking=True):
                return True

            def release(self):
                pass
        dispatch.parallel_region = NoLock()

    def job(seed):
        np.random.seed(seed)
        net, adam = SimpleConvNet(dtype=np.float32), Adam()
        rng = np.random.default_rng(seed)
        x = rng.random((100, 1, 28, 28), dtype=np.float32)
        t = rng.integers(0, 10, 100)
        return lambda: adam.update(net.params, net.gradient(x, t))

    steps = [job(1), job(2)]
    for _ in range(3):
        steps[0](), steps[1]()
    step_one = statistics.median(_timed(steps[0], 5) for _ in range(6))
    step_two = _in_two_threads(steps, 10)
    x = np.random.default_rng(0).standard_normal(MILLION).astype(np.float32)
    relu = lambda: Relu().forward(x)  # noqa: E731
    relu()
    relu_one = statistics.median(_timed(relu, 20) for _ in range(5))
    relu_two = _in_two_threads([relu, relu], 50)
    return {"variant": variant, "layer": numba.threading_layer(), "step_1thread": step_one,
            "step_2pythonthreads": step_two, "relu1M_1thread": relu_one,
            "relu1M_2pythonthreads": relu_two}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    variants = args.variants.split(",")
    rows = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in variants[r % len(variants):] + variants[:r % len(variants)]:
            env = dict(os.environ, NUMBA_NUM_THREADS="2")
            layer = name.split("+")[0].split("-")[0]
            env.pop("NUMBA_THREADING_LAYER", None)
            if layer != "workqueue":
                env["NUMBA_THREADING_LAYER"] = layer
            proc = subprocess.run([sys.executable, __file__, "--child", name], env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                print(f"{name}: exit {proc.returncode} {proc.stderr[-300:]}", flush=True)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows[name].append(row)
    base = rows.get("workqueue+lock")
    keys = ["step_1thread", "step_2pythonthreads", "relu1M_1thread", "relu1M_2pythonthreads"]
    print("medians over rounds, ms" + (" (ratio to workqueue+lock)" if base else ""))
    for name, got in rows.items():
        if not got:
            continue
        cells = []
        for key in keys:
            value = statistics.median(row[key] for row in got)
            ratio = f" ({value / statistics.median(r[key] for r in base):.2f}x)" if base else ""
            cells.append(f"{key} {value:.2f}{ratio}")
        print(f"{name}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
