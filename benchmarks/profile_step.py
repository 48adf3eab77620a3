#!/usr/bin/env python
"""Where a training step spends its time, per layer and phase (forward/backward).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE NUMBA_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 \\
        python benchmarks/profile_step.py [--net deep|simple] [--dtype float32|float64|both] \\
        [--steps 20]

Each step the network runs (a fused conv block, an affine layer, dropout, the loss) and the
optimizer update is timed on its own with ``perf_counter`` around its ``forward`` and
``backward``; the table gives each one's median over ``--steps`` training steps after two
untimed warm-up steps (so JIT compilation is never timed), its GFLOP/s where it has FLOPs,
and the whole step's median. A network runs its consecutive conv blocks, and the affine
layer after them, as one pass over each part of the batch (``fastconv.layers.chain``), where
no single layer can be timed: for the table each layer runs on its own, and the step as the
network runs it is timed after, ``--steps`` more times. Below each table: that step's median,
and what handing parts of it to the pool thread cost (``gemm.handoff_log``), the time from a
hand-over to the pool thread's start and from its end to the caller's return, which a thread
that slept pays in its core's wake-up. Not an asv suite: it imports nothing heavy at module
level.
"""
import argparse
import statistics
import sys
import time
from collections import defaultdict


def _timed(cls, method, label_of, times, column=None):
    """Wrap ``cls.method`` so that each call adds its duration to times[label, column]
    (column: the method's name unless given)."""
    original = getattr(cls, method)

    def wrapper(self, *args, **kwargs):
        start = time.perf_counter()
        out = original(self, *args, **kwargs)
        times[label_of(self), column or method].append(time.perf_counter() - start)
        return out
    setattr(cls, method, wrapper)
    return lambda: setattr(cls, method, original)


def _conv_label(conv):
    filters, channels, size, _ = conv.W.shape
    _, _, height, width = conv.x.shape
    return f"conv {channels}->{filters} {size}x{size} pad {conv.pad} at {height}x{width}"


def conv_macs(conv):
    """Multiply-adds of one forward convolution over the batch it last saw."""
    filters, channels, size, _ = conv.W.shape
    n, _, height, width = conv.x.shape
    out_h = (height + 2 * conv.pad - size) // conv.stride + 1
    out_w = (width + 2 * conv.pad - size) // conv.stride + 1
    return n * filters * out_h * out_w * channels * size * size


NETS = {"deep": "DeepConvNet", "simple": "SimpleConvNet"}


def _median_step(step, steps):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def profile(dtype, steps, seed=0, net_name="deep"):
    """({label: {"forward": s, "backward": s, "flops": forward+backward FLOPs or None}} and
    the median step time with each layer run on its own, and {"step": the median step as the
    network runs it, and the ``handoff_summary`` of that step}, for a training step (batch
    100, Adam) of NETS[net_name] in `dtype`."""
    import numpy as np
    from fastconv import nets, optimizer
    from fastconv.kernels.jit import gemm
    from fastconv.layers import Affine, Dropout, SoftmaxWithLoss
    from fastconv.layers.fused import ConvReluBlock
    from fastconv.nets import base

    np.random.seed(seed)
    net = getattr(nets, NETS[net_name])(dtype=np.dtype(dtype).type)
    adam = optimizer.Adam()
    rng = np.random.default_rng(seed)
    x = rng.random((100, 1, 28, 28)).astype(dtype)
    t = rng.integers(0, 10, 100)

    def step():
        adam.update(net.params, net.gradient(x, t))

    times, flops = defaultdict(list), {}

    layers = net._layer_list()  # an OrderedDict (SimpleConvNet) or a list (DeepConvNet)

    def block_label(block):
        label = _conv_label(block.conv) + (" +relu+pool" if block.pool is not None else
                                           " +relu")
        first = block.conv is layers[0]  # no input gradient is needed there
        flops[label] = 2 * conv_macs(block.conv) * (2 if first else 3)
        return label

    def affine_label(layer):
        label = "affine {}x{}".format(*layer.W.shape)
        flops[label] = 2 * layer.x.shape[0] * layer.W.size * 3
        return label

    chain = base.chain
    base.chain = list  # every layer through its own forward and backward, to be timed
    restore = [lambda: setattr(base, "chain", chain)]
    try:
        for _ in range(2):  # compiles or loads every kernel; never timed
            step()
        for cls, label_of in ((ConvReluBlock, block_label), (Affine, affine_label),
                              (Dropout, lambda _: "dropout (both)"),
                              (SoftmaxWithLoss, lambda _: "softmax + loss")):
            for method in ("forward", "backward"):
                restore.append(_timed(cls, method, label_of, times))
        restore.append(_timed(type(adam), "update", lambda _: "Adam update", times))
        by_layer = _median_step(step, steps)
    finally:
        for undo in reversed(restore):
            undo()
    step()  # one untimed step as the network runs it, after the layer-by-layer ones
    gemm.handoff_log = []
    try:
        chained = {"step": _median_step(step, steps)}
        handoffs = gemm.handoff_log
    finally:
        gemm.handoff_log = None
    chained["handoffs"] = handoff_summary(handoffs, steps)

    rows = defaultdict(dict)
    for (label, method), seconds in times.items():
        # two dropout layers share a label: a step's dropout time is their sum
        per_step = len(seconds) // steps
        sums = [sum(seconds[i * per_step:(i + 1) * per_step]) for i in range(steps)]
        rows[label][method] = statistics.median(sums)
        rows[label]["flops"] = flops.get(label)
    return dict(rows), by_layer, chained


def handoff_summary(log, steps):
    """What handing parts to the pool thread cost, from ``gemm.handoff_log`` over ``steps``
    steps: {"per_step": hand-overs a step, "start": the median delay before a pool thread
    began its group, "wake": the median time the caller took to return after the last pool
    group ended, where the caller's own group ended first, "beyond": seconds a step spent in
    the hand-overs beyond their longest group}; None when nothing was handed over."""
    if not log:
        return None
    starts, wakes, beyond = [], [], 0.0
    for called, caller_done, pool, returned in log:
        starts.append(pool[0][0] - called)
        last_end = max(end for _, end in pool)
        if caller_done < last_end:
            wakes.append(returned - last_end)
        longest = max(caller_done - called, max(end - start for start, end in pool))
        beyond += (returned - called) - longest
    return {"per_step": len(log) / steps, "start": statistics.median(starts),
            "wake": statistics.median(wakes) if wakes else 0.0, "beyond": beyond / steps}


def markdown(rows, step, dtype, threads, net_name="deep", chained=None):
    lines = [f"{NETS[net_name]} training step, batch 100, Adam, {dtype}, {threads} thread(s), "
             f"each layer run on its own: median step {step * 1e3:.1f} ms",
             "",
             "| step | forward | backward (or update) | share of the step | GFLOP/s |",
             "|---|---:|---:|---:|---:|"]
    accounted = 0.0
    for label, row in rows.items():
        forward = row.get("forward", 0.0)
        backward = row.get("backward", 0.0) + row.get("update", 0.0)
        total = forward + backward
        accounted += total
        rate = "—" if not row.get("flops") else f"{row['flops'] / total / 1e9:.0f}"
        lines.append(f"| {label} | {forward * 1e3:.2f} ms | {backward * 1e3:.2f} ms "
                     f"| {total / step:.0%} | {rate} |")
    lines.append(f"| the rest (Python, loss bookkeeping, gradient dict) | | "
                 f"| {max(0.0, 1 - accounted / step):.0%} | |")
    if chained is not None:
        lines += ["", f"As the network runs it (consecutive blocks and the affine layer after "
                      f"them as one pass): median step {chained['step'] * 1e3:.1f} ms."]
        handoffs = chained["handoffs"]
        if handoffs is not None:
            lines[-1] += (f" Hand-overs to the pool thread: {handoffs['per_step']:.0f} a step; "
                          f"a pool thread began its part {handoffs['start'] * 1e6:.0f} us "
                          f"after the hand-over and the caller, done first, returned "
                          f"{handoffs['wake'] * 1e6:.0f} us after the pool thread (medians); "
                          f"{handoffs['beyond'] * 1e3:.2f} ms a step "
                          f"({handoffs['beyond'] / chained['step']:.0%}) beyond the longest "
                          f"part of each.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=("float32", "float64", "both"), default="both")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--net", choices=sorted(NETS), default="deep")
    args = parser.parse_args(argv)
    import numba
    import fastconv
    fastconv.use_backend("numba")
    threads = numba.get_num_threads()
    for dtype in (("float32", "float64") if args.dtype == "both" else (args.dtype,)):
        rows, step, chained = profile(dtype, args.steps, net_name=args.net)
        print(markdown(rows, step, dtype, threads, args.net, chained))
    return 0


if __name__ == "__main__":
    sys.exit(main())
