#!/usr/bin/env python
"""float64 against float32, kernel by kernel: which jit kernels fall off the vector path.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE FASTCONV_DATA=... \
        python benchmarks/dtype_ratio.py [--rounds 30] [--nets simple,deep,extend] \
        [--data mnist|random] [--only TEXT] [--no-steps] [--json FILE]

A kernel that streams memory or runs a GEMM should take about twice as long in float64 as
in float32 (twice the bytes, half the GEMM rate). One that takes much longer has lost its
vectorization in float64: a select chain compiled to branches (the 2x2 pool of commit
648691b was 7x), a conversion, a path that is not compiled. This script finds them.

It builds SimpleConvNet, DeepConvNet and MultiLayerNetExtend (BatchNorm and Dropout, the
book's batch_norm_test.py sizes) in float64, runs one training step on a batch of 100
(MNIST when ``load_mnist`` finds it, else uniform noise) and records what each layer
received. Every kernel that step runs is then called on those same operands, once cast to
float32 and once in float64: the fused conv blocks whole and phase by phase (padding, im2col,
forward GEMM, epilogue, prologue, bias-gradient row sums, the two backward GEMMs, col2im,
crop), each phase looped over the batch in the chunks the pipeline uses for that dtype by
one compiled driver (no Python between chunks); the affine, ReLU, softmax, batch-norm and
dropout kernels; the optimizer updates; and, unless ``--no-steps``, whole training steps.
The phases are the im2col pipeline's: a layer whose forward pass runs directly
(``pipeline.DIRECT_MAX_CHANNELS``) times its forward block whole, by that path.

Measurement: one process, 1 Numba thread and 1 BLAS thread (set here before NumPy and
Numba are imported), ``time.thread_time`` (CPU time of this thread, so another job on a
shared machine taking the core does not count; with one thread every kernel runs in the
calling thread). Every case is calibrated to run a few milliseconds per sample (several
calls when one is short); then each round times every case in both dtypes, in alternating
order, and the table gives the medians over rounds and the median of each round's
float64/float32 ratio. Ratios well above ~2.3 are flagged.

Not an asv suite: it imports nothing heavy at module level.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

FLAG_RATIO = 2.3
SAMPLE_SECONDS = 2e-3  # each sample runs the case this long at least (calls are repeated)


def _pin_threads():
    """One Numba and one BLAS thread; must run before NumPy or Numba is imported."""
    for name in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    if "numba" in sys.modules and sys.modules["numba"].config.NUMBA_NUM_THREADS != 1:
        raise RuntimeError("dtype_ratio: Numba was imported with more than one thread; "
                           "run the script on its own (NUMBA_NUM_THREADS=1)")


def _batch(kind, np):
    """(x (100, 1, 28, 28) float64, labels (100,)) and where they came from."""
    rng = np.random.default_rng(0)
    if kind == "mnist":
        try:
            from fastconv.datasets import load_mnist
            (x, t), _ = load_mnist(normalize=True, flatten=False)
            return x[:100].astype(np.float64), t[:100].astype(np.intp), "MNIST (first 100)"
        except Exception as exc:  # noqa: BLE001 - no data here: noise will do
            print(f"dtype_ratio: no MNIST ({exc}); using uniform noise", file=sys.stderr)
    return rng.random((100, 1, 28, 28)), rng.integers(0, 10, 100), "uniform noise"


def _networks(np, names, dtype):
    from fastconv import nets
    np.random.seed(0)
    built = {}
    if "simple" in names:
        built["simple"] = nets.SimpleConvNet(dtype=dtype)
    if "deep" in names:
        built["deep"] = nets.DeepConvNet(dtype=dtype)
    if "extend" in names:
        built["extend"] = nets.MultiLayerNetExtend(
            input_size=784, hidden_size_list=[100] * 5, output_size=10, use_batchnorm=True,
            use_dropout=True, dropout_ration=0.2, dtype=dtype)
    return built


def _record_step(net, x, t):
    """[(layer object, forward input, backward dout)] of one float64 training step."""
    from fastconv.layers import Affine, BatchNormalization, Dropout, Relu, SoftmaxWithLoss
    from fastconv.layers.fused import ConvReluBlock

    seen, order, undo = {}, [], []

    def hook(cls, method):
        original = getattr(cls, method)

        def wrapper(self, arg, *args, **kwargs):
            entry = seen.setdefault(id(self), [self, None, None])
            if entry[1] is None and method == "forward":
                order.append(entry)
            entry[1 if method == "forward" else 2] = arg.copy() if hasattr(arg, "copy") else arg
            return original(self, arg, *args, **kwargs)
        setattr(cls, method, wrapper)
        undo.append(lambda: setattr(cls, method, original))

    for cls in (ConvReluBlock, Affine, BatchNormalization, Dropout, Relu, SoftmaxWithLoss):
        hook(cls, "forward")
        hook(cls, "backward")
    # a network runs consecutive blocks and the affine layer after them as one chain; here
    # each layer's own forward is called, so that each records its input
    from fastconv.nets import base
    chain = base.chain
    base.chain = list
    undo.append(lambda: setattr(base, "chain", chain))
    try:
        grads = net.gradient(x, t)
    finally:
        for u in undo:
            u()
    return [tuple(entry) for entry in order], grads


# ---- the fused conv block, phase by phase -----------------------------------------------

PHASES = ("pad", "im2col", "gemm forward", "epilogue", "prologue", "row sums (db)",
          "gemm dW", "gemm dx", "col2im", "crop")
INFERENCE = len(PHASES)  # the epilogue of a pooling block without argmax (predict, accuracy)
_driver = None


def _phase_driver():
    """One compiled loop over a batch's chunks that runs a single phase of the pipeline."""
    global _driver
    if _driver is None:
        from numba import njit
        from fastconv.kernels.jit.blas import gemm
        from fastconv.kernels.jit.epilogues import (_add_row_sums, backward_prologue,
                                                    forward_epilogue, output_rows_split)
        from fastconv.kernels.jit.im2col import (_col2im_padded, _crop_images,
                                                 _im2col_padded, _pad_images)
        from fastconv.kernels.jit.pipeline import DOT_MIN_COLUMNS, DOT_MIN_POSITIONS
        from fastconv.kernels.jit.weight_gradient import add_weight_gradient_tiles

        @njit(nogil=True)
        def drive(phase, x, Wm, chunk, geometry, scratch, epilogue, prologue, dW, db, dx):
            FH, FW, stride, pad, conv_h, conv_w = geometry
            flat_cols, flat_rows, xp = scratch
            kind, b, pool, out, argmax = epilogue
            pkind, _, dout, _, _ = prologue
            split = output_rows_split(kind, pool, conv_h, conv_w)  # as the block's chunks
            FN, K = Wm.shape
            P = conv_h * conv_w
            for n0 in range(0, x.shape[0], chunk):
                n1 = min(n0 + chunk, x.shape[0])
                m = (n1 - n0) * P
                cols = flat_cols[:K * m].reshape((K, m))
                rows = flat_rows[:FN * m].reshape((FN, m))
                if phase == 0:
                    _pad_images(x, n0, n1, pad, xp)
                elif phase == 1:
                    _im2col_padded(xp, n1 - n0, FH, FW, stride, conv_h, conv_w, cols, split)
                elif phase == 2:
                    gemm(Wm, False, cols, False, rows, 0)
                elif phase == 3:
                    forward_epilogue(kind, rows, n0, conv_h, conv_w, b, pool, out, argmax,
                                     split)
                elif phase == 4:
                    backward_prologue(pkind, n0, n1, conv_h, conv_w, pool, dout, out, argmax,
                                      rows, split)
                elif phase == 5:
                    _add_row_sums(rows, db)
                elif phase == 6:  # as _backward_chunks sums it
                    if cols.shape[1] < DOT_MIN_POSITIONS or cols.shape[0] < DOT_MIN_COLUMNS:
                        gemm(rows, False, cols, True, dW, 1)
                    else:
                        f, k = add_weight_gradient_tiles(rows, cols, dW)
                        if f < rows.shape[0]:
                            gemm(rows[f:], False, cols, True, dW[f:], 1)
                        if k < cols.shape[0]:
                            gemm(rows[:f], False, cols[k:], True, dW[:f, k:], 1)
                elif phase == 7:
                    gemm(Wm, True, rows, False, cols, 0)
                elif phase == 8:
                    _col2im_padded(cols, n1 - n0, FH, FW, stride, conv_h, conv_w, xp, split)
                else:
                    _crop_images(xp, n0, n1, pad, dx)
        _driver = drive
    return _driver


def _block_cases(label, block, x64, dout64, np):
    """[(name, make(dtype) -> callable)] for a fused conv block and its phases."""
    from fastconv.kernels import jit
    from fastconv.kernels.jit import epilogues as ep
    from fastconv.kernels.jit.pipeline import _layer_operands

    conv, pool = block.conv, block.pool
    pool_args = () if pool is None else (pool.pool_h, pool.pool_w, pool.stride, pool.pad)
    need_dx = conv.need_input_grad

    def operands(dtype):
        x = x64.astype(dtype)
        W, b = conv.W.astype(dtype), conv.b.astype(dtype)
        dout = dout64.astype(dtype)
        if pool is None:
            out, _ = jit.conv_relu_forward(x, W, b, conv.stride, conv.pad)
            argmax = ep.NO_ARGMAX
        else:
            out, argmax, _ = jit.conv_relu_pool_forward(x, W, b, conv.stride, conv.pad,
                                                        *pool_args)
        return x, W, b, dout, out, argmax

    def forward(dtype):
        x, W, b, *_ = operands(dtype)
        if pool is None:
            return lambda: jit.conv_relu_forward(x, W, b, conv.stride, conv.pad)
        return lambda: jit.conv_relu_pool_forward(x, W, b, conv.stride, conv.pad, *pool_args)

    def inference(dtype):
        x, W, b, *_ = operands(dtype)
        return lambda: jit.conv_relu_pool_forward(x, W, b, conv.stride, conv.pad, *pool_args,
                                                  with_argmax=False)

    def backward(dtype):
        x, W, b, dout, out, argmax = operands(dtype)
        if pool is None:
            return lambda: jit.conv_relu_backward(dout, out, x, W, None, conv.stride,
                                                  conv.pad, need_dx)
        return lambda: jit.conv_relu_pool_backward(dout, out, argmax, x, W, None, conv.stride,
                                                   conv.pad, *pool_args, need_dx)

    def phase(index):
        def make(dtype):
            step = index
            x, W, b, dout, out, argmax = operands(dtype)
            x, Wm, geometry, chunk = _layer_operands(x, W, conv.stride, conv.pad)
            FN, K = Wm.shape
            P = geometry[4] * geometry[5]
            pad = geometry[3]
            scratch = (np.empty(K * chunk * P, dtype), np.empty(FN * chunk * P, dtype),
                       np.empty((chunk, x.shape[1], x.shape[2] + 2 * pad,
                                 x.shape[3] + 2 * pad), dtype))
            pool_t = ep.NO_POOL if pool is None else pool_args
            kind = ep.OUTPUT_RELU if pool is None else ep.OUTPUT_RELU_POOL
            if step == INFERENCE:
                kind, step = ep.OUTPUT_RELU_POOL_VALUES, 3
            pkind = ep.GRADIENT_RELU if pool is None else ep.GRADIENT_RELU_POOL
            out_w = np.empty_like(out)
            argmax_w = np.empty_like(argmax)
            epilogue = (kind, b, pool_t, out_w if step == 3 else out,
                        argmax_w if step == 3 else argmax)
            prologue = (pkind, pool_t, dout, out, argmax)
            dW = np.zeros(Wm.shape, dtype)
            db = np.zeros(FN)
            dx = np.empty_like(x)
            drive = _phase_driver()
            # fill the scratch as the pipeline leaves it before this phase (first chunk)
            one = x[:chunk]
            for before in (0, 1, 2):
                drive(before, one, Wm, chunk, geometry, scratch, epilogue, prologue, dW, db, dx)
            if step >= 4:
                drive(4, one, Wm, chunk, geometry, scratch, epilogue, prologue, dW, db, dx)
            if step >= 8:
                drive(7, one, Wm, chunk, geometry, scratch, epilogue, prologue, dW, db, dx)
            return lambda: drive(step, x, Wm, chunk, geometry, scratch, epilogue, prologue,
                                 dW, db, dx)
        return make

    cases = [(f"{label} forward", forward), (f"{label} backward", backward)]
    for index, name in enumerate(PHASES):
        if name in ("gemm dx", "col2im", "crop") and not need_dx:
            continue
        cases.append((f"{label} | {name}", phase(index)))
    if pool is not None:
        cases += [(f"{label} forward without argmax (inference)", inference),
                  (f"{label} | epilogue without argmax (inference)", phase(INFERENCE))]
    return cases


# ---- the other layers -------------------------------------------------------------------

def _layer_cases(label, layer, x64, dout64, np):
    from fastconv.kernels import jit
    from fastconv.kernels.jit import elementwise as el
    from fastconv.kernels.jit.gemm import matmul
    from fastconv.layers import Affine, BatchNormalization, Dropout, Relu, SoftmaxWithLoss

    kind = type(layer)
    if kind is Affine:
        x2 = x64.reshape(x64.shape[0], -1)

        def fw(dtype):
            x, W, b = x2.astype(dtype), layer.W.astype(dtype), layer.b.astype(dtype)
            return lambda: jit.affine_forward(x, W, b)

        def bw(dtype):
            x, W, d = x2.astype(dtype), layer.W.astype(dtype), dout64.astype(dtype)
            return lambda: jit.affine_backward(d, x, W, layer.need_input_grad)

        def gemm_fw(dtype):
            x, W = x2.astype(dtype), layer.W.astype(dtype)
            return lambda: matmul(x, W)

        def add_bias(dtype):
            y = (x2 @ layer.W).astype(dtype)
            b = layer.b.astype(dtype)
            return lambda: el._add_row_vector(y, b)

        def column_sum(dtype):
            d = dout64.astype(dtype)
            db = np.empty(d.shape[1], dtype)
            return lambda: el._column_sum(d, db)

        name = "affine {}x{}".format(*layer.W.shape)
        return [(f"{label} {name} forward", fw), (f"{label} {name} backward", bw),
                (f"{label} {name} | gemm forward", gemm_fw),
                (f"{label} {name} | bias add", add_bias),
                (f"{label} {name} | column sum (db)", column_sum)]
    if kind is Relu:
        def fw(dtype):
            x = x64.astype(dtype)
            return lambda: jit.relu_forward(x)

        def bw(dtype):
            d = dout64.astype(dtype)
            _, mask = jit.relu_forward(x64.astype(dtype))
            return lambda: jit.relu_backward(d, mask)
        return [(f"{label} relu {x64.shape[1]} forward", fw),
                (f"{label} relu {x64.shape[1]} backward", bw)]
    if kind is SoftmaxWithLoss:
        t = layer._labels

        def fw(dtype):
            x = x64.astype(dtype)
            return lambda: jit.softmax_cross_entropy_forward(x, t)

        def bw(dtype):
            y, _ = jit.softmax_cross_entropy_forward(x64.astype(dtype), t)
            return lambda: jit.softmax_cross_entropy_backward(y, t)
        return [(f"{label} softmax + loss forward", fw),
                (f"{label} softmax + loss backward", bw)]
    if kind is BatchNormalization:
        x2 = x64.reshape(x64.shape[0], -1)

        def fw(dtype):
            x, g, b = x2.astype(dtype), layer.gamma.astype(dtype), layer.beta.astype(dtype)
            return lambda: jit.batchnorm_forward(x, g, b, 1e-7)

        def bw(dtype):
            g = layer.gamma.astype(dtype)
            _, _, _, xc, xn, std = jit.batchnorm_forward(x2.astype(dtype), g,
                                                         layer.beta.astype(dtype), 1e-7)
            d = dout64.reshape(x2.shape).astype(dtype)
            return lambda: jit.batchnorm_backward(d, xc, xn, std, g)
        return [(f"{label} batchnorm {x2.shape[1]} forward", fw),
                (f"{label} batchnorm {x2.shape[1]} backward", bw)]
    if kind is Dropout:
        def fw(dtype):  # the layer itself: NumPy (np.random.rand > ratio, x * mask)
            drop, x = Dropout(layer.dropout_ratio), x64.astype(dtype)
            return lambda: drop.forward(x)

        def bw(dtype):
            drop, d = Dropout(layer.dropout_ratio), dout64.astype(dtype)
            drop.forward(x64.astype(dtype))
            return lambda: drop.backward(d)
        return [(f"{label} dropout {x64.shape[1]} forward (NumPy)", fw),
                (f"{label} dropout {x64.shape[1]} backward (NumPy)", bw)]
    return []


def _unfused_cases(label, block, x64, np):
    """The layer-by-layer kernels of a conv block (conv, ReLU, pool, the book's im2col): what
    a network of the user's own, or a backward walk by hand, runs instead of the block."""
    from fastconv.kernels import jit

    conv, pool = block.conv, block.pool
    FH, FW, s, p = conv.W.shape[2], conv.W.shape[3], conv.stride, conv.pad
    y64, _ = jit.conv2d_forward(x64, conv.W, conv.b, s, p)
    r64 = np.maximum(y64, 0)
    pool_args = (pool.pool_h, pool.pool_w, pool.stride, pool.pad)
    p64, argmax = jit.maxpool_forward(r64, *pool_args)
    dout64 = np.random.default_rng(0).standard_normal(p64.shape)

    def case(name, arrays, call):
        def make(dtype):  # float operands in dtype, masks as they are
            args = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
            return lambda: call(*args)
        return (f"{label} unfused {name}", make)

    return [
        case("conv forward", (x64, conv.W, conv.b),
             lambda x, W, b: jit.conv2d_forward(x, W, b, s, p)),
        case("conv backward", (y64, x64, conv.W),
             lambda d, x, W: jit.conv2d_backward(d, x, W, None, s, p, conv.need_input_grad)),
        case(f"relu {'x'.join(map(str, y64.shape[1:]))} forward", (y64,), jit.relu_forward),
        case(f"relu {'x'.join(map(str, y64.shape[1:]))} backward", (y64, y64 <= 0),
             jit.relu_backward),
        case("maxpool forward", (r64,), lambda x: jit.maxpool_forward(x, *pool_args)),
        case("maxpool backward", (dout64,),
             lambda d: jit.maxpool_backward(d, argmax, r64.shape, *pool_args)),
        case("im2col (the book's layout)", (x64,), lambda x: jit.im2col(x, FH, FW, s, p)),
        case("col2im (the book's layout)", (jit.im2col(x64, FH, FW, s, p),),
             lambda col: jit.col2im(col, x64.shape, FH, FW, s, p)),
    ]


def _update_cases(label, net, grads64, np):
    """Adam for every network; SGD as well for MultiLayerNetExtend (batch_norm_test.py)."""
    from fastconv import optimizer

    def make(cls):
        def build(dtype):
            params = {k: v.astype(dtype) for k, v in net.params.items()}
            grads = {k: v.astype(dtype) for k, v in grads64.items()}
            opt = cls(lr=1e-9)  # tiny steps: the parameters stay where they were
            opt.update(params, grads)
            return lambda: opt.update(params, grads)
        return build

    cases = [(f"{label} Adam update ({sum(v.size for v in net.params.values())} params)",
              make(optimizer.Adam))]
    if label == "extend":
        cases.append((f"{label} SGD update", make(optimizer.SGD)))
    return cases


def _step_case(label, name, np, x64, t):
    from fastconv import optimizer

    def build(dtype):
        net = _networks(np, [name], dtype)[name]
        adam, x = optimizer.Adam(lr=1e-9), x64.astype(dtype)
        if name == "extend":
            x = x.reshape(x.shape[0], -1)
        adam.update(net.params, net.gradient(x, t))
        return lambda: adam.update(net.params, net.gradient(x, t))
    return (f"{label} training step (gradient + Adam)", build)


def build_cases(names, data, steps=True):
    """[(case name, make(dtype) -> zero-argument callable)] and the data's description."""
    import numpy as np
    from fastconv.layers.fused import ConvReluBlock

    x, t, source = _batch(data, np)
    cases = []
    for name, net in _networks(np, names, np.float64).items():
        xin = x.reshape(x.shape[0], -1) if name == "extend" else x
        recorded, grads = _record_step(net, xin, t)
        blocks = 0
        for layer, x_in, dout in recorded:
            if isinstance(layer, ConvReluBlock):
                blocks += 1
                conv = layer.conv
                label = (f"{name} conv{blocks} {conv.W.shape[1]}->{conv.W.shape[0]} "
                         f"{conv.W.shape[2]}x{conv.W.shape[3]} pad {conv.pad} at "
                         f"{x_in.shape[2]}x{x_in.shape[3]}"
                         + (" +relu+pool" if layer.pool is not None else " +relu"))
                cases += _block_cases(label, layer, x_in, dout, np)
                if name == "simple":
                    cases += _unfused_cases(name, layer, x_in, np)
            else:
                if type(layer).__name__ == "SoftmaxWithLoss":
                    layer._labels = np.asarray(t, dtype=np.intp)
                cases += _layer_cases(name, layer, x_in, dout, np)
        cases += _update_cases(name, net, grads, np)
        if steps:
            cases.append(_step_case(name, name, np, x, t))
    # a layer type that appears several times with the same shapes is measured once
    unique, names_seen = [], set()
    for case in cases:
        if case[0] not in names_seen:
            names_seen.add(case[0])
            unique.append(case)
    return unique, source


def measure(cases, rounds, clock=time.thread_time, progress=None):
    """{case name: (float32 median s, float64 median s, median of per-round ratios)}."""
    import numpy as np
    runs = []
    for name, make in cases:
        pair = [make(np.float32), make(np.float64)]
        for fn in pair:  # warm-up: compile, fault the pages in
            fn()
            fn()
        start = clock()
        pair[0]()
        once = max(clock() - start, 1e-7)
        runs.append((name, pair, max(1, math.ceil(SAMPLE_SECONDS / once)), [[], []]))
        if progress:
            progress(f"ready: {name}")
    for r in range(rounds):
        for name, pair, calls, samples in runs:
            for which in ((0, 1) if r % 2 == 0 else (1, 0)):
                fn = pair[which]
                start = clock()
                for _ in range(calls):
                    fn()
                samples[which].append((clock() - start) / calls)
    result = {}
    for name, _, _, (s32, s64) in runs:
        ratios = [b / a for a, b in zip(s32, s64) if a > 0]
        result[name] = (statistics.median(s32), statistics.median(s64),
                        statistics.median(ratios))
    return result


def markdown(result, flag=FLAG_RATIO):
    lines = ["| kernel (net, layer, phase) | float32 | float64 | float64/float32 |",
             "|---|---:|---:|---:|"]
    for name, (t32, t64, ratio) in result.items():
        mark = f"**{ratio:.2f}**" if ratio > flag else f"{ratio:.2f}"
        lines.append(f"| {name} | {t32 * 1e6:.1f} us | {t64 * 1e6:.1f} us | {mark} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--nets", default="simple,deep,extend",
                        help="comma-separated: simple, deep, extend")
    parser.add_argument("--data", choices=("mnist", "random"), default="mnist")
    parser.add_argument("--no-steps", action="store_true", help="skip whole training steps")
    parser.add_argument("--only", default="", help="only cases whose name holds this text")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.nets.split(",") if n.strip()]
    unknown = set(names) - {"simple", "deep", "extend"}
    if unknown:
        parser.error(f"--nets: unknown network(s) {sorted(unknown)}; use simple, deep, extend")
    _pin_threads()
    import numba
    import fastconv
    fastconv.use_backend("numba")
    cases, source = build_cases(names, args.data, steps=not args.no_steps)
    cases = [c for c in cases if args.only in c[0]]
    result = measure(cases, args.rounds,
                     progress=lambda text: print(text, file=sys.stderr, flush=True))
    print(f"float64 against float32, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{numba.get_num_threads()} Numba thread, data: {source}; medians of {args.rounds} "
          f"interleaved rounds (time.thread_time); the ratio is the median of each round's "
          f"ratio, bold above {FLAG_RATIO}.\n")
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
