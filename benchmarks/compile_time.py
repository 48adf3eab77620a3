#!/usr/bin/env python
"""What a first training step compiles on an empty Numba cache, and for how long.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/compile_time.py [--net simple|deep|two_layer] \\
        [--dtype float32|float64] [--top 12] [--cache DIR]

A fresh install, a new Colab session and a new Numba version all pay this step: every kernel
it reaches compiles before it runs. The script starts a child process on an empty cache (a
temporary directory, or ``--cache``, which must be empty), builds the network, and times its
first ``gradient`` and Adam update while it records Numba's compile events
(``numba.core.event``). It prints the step's wall time, the time spent compiling in this
process, and the functions that took longest: each one's own time (without the functions it
compiled on the way, which have their rows) and when it started, counted from the step's
start. The loops that the step needs next are compiled meanwhile in helper processes
(``background_compile``), which these events do not see; their time shows only where the
step waits for them.

Compile times vary by a second or more from run to run on a shared machine: compare two
versions in alternating runs, not one run each.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

NETS = {"simple": "SimpleConvNet", "deep": "DeepConvNet", "two_layer": "TwoLayerNet"}
BATCH = 100


def _name(dispatcher):
    function = getattr(dispatcher, "py_func", dispatcher)
    module = getattr(function, "__module__", "") or ""
    return f"{module.rsplit('.', 1)[-1]}.{getattr(function, '__qualname__', repr(function))}"


def compile_spans(buffer, origin):
    """[(name, start, own seconds, total seconds)] from a recording of "numba:compile" events
    ((time, Event) pairs, as ``RecordingListener`` keeps them), start counted from origin. A
    compile that starts inside another is that one's callee: its time is taken out of the
    caller's own. Numba compiles under one lock, so the events nest on a single stack."""
    spans, stack = [], []
    for stamp, event in buffer:
        if event.is_start:
            stack.append([_name(event.data["dispatcher"]), stamp, 0.0])
            continue
        name, start, nested = stack.pop()
        total = stamp - start
        if stack:
            stack[-1][2] += total
        spans.append((name, start - origin, total - nested, total))
    return spans


def _first_step(net_name, dtype):
    """Runs and times the first step in this process: (wall seconds, compile spans)."""
    import numpy as np
    from numba.core import event

    from fastconv import nets
    from fastconv.optimizer import Adam

    np.random.seed(0)
    rng = np.random.default_rng(0)
    if net_name == "two_layer":
        net = nets.TwoLayerNet(784, 50, 10, dtype=dtype)
        x = rng.random((BATCH, 784)).astype(dtype)
    else:
        net = getattr(nets, NETS[net_name])(dtype=dtype)
        x = rng.random((BATCH, 1, 28, 28)).astype(dtype)
    t = rng.integers(0, 10, BATCH)
    optimizer = Adam()
    with event.install_recorder("numba:compile") as recording:
        start = time.time()  # the clock of the recorder's stamps
        optimizer.update(net.params, net.gradient(x, t))
        wall = time.time() - start
    return wall, compile_spans(recording.buffer, start)


def report(net_name, dtype, wall, spans, top):
    compiled = sum(own for _, _, own, _ in spans)
    lines = [f"first {NETS[net_name]} step ({dtype}, batch {BATCH}, Adam) on an empty Numba "
             f"cache: {wall:.2f} s, of which {compiled:.2f} s compiling in this process "
             f"({len(spans)} compiles)", "",
             "| function | starts at | own | with its callees |", "|---|---:|---:|---:|"]
    for name, start, own, total in sorted(spans, key=lambda s: -s[2])[:top]:
        lines.append(f"| {name} | {start:.2f} s | {own:.2f} s | {total:.2f} s |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", choices=sorted(NETS), default="simple")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--top", type=int, default=12, help="rows of the table")
    parser.add_argument("--cache", help="an empty directory for the Numba cache (default: a "
                        "temporary one, removed after)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # the measured process, on the cache its parent chose
        wall, spans = _first_step(args.net, args.dtype)
        print(report(args.net, args.dtype, wall, spans, args.top))
        return 0
    if args.cache is not None:
        if os.path.isdir(args.cache) and os.listdir(args.cache):
            parser.error(f"--cache {args.cache} is not empty: the step would load from it")
        return _run_child(args, args.cache)
    with tempfile.TemporaryDirectory(prefix="fastconv-compile-time-") as cache:
        return _run_child(args, cache)


def _run_child(args, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    command = [sys.executable, os.path.abspath(__file__), "--child", "--net", args.net,
               "--dtype", args.dtype, "--top", str(args.top)]
    return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
