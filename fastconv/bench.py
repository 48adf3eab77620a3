"""Time every kernel and layer against its NumPy twin, in one run: ``python -m fastconv.bench``.

Shapes are those of the book's SimpleConvNet and DeepConvNet at batch 100. Each figure is
the best of several repeats after a warm-up call (so JIT compilation is never timed); the
ratio is NumPy time / Numba time, measured back to back in the same process.
"""
import argparse
import time

import numpy as np

from fastconv.backend import kernels

# name -> (x shape, W shape, stride, pad); then a 2x2/2 max pool on the conv output
CONV_SHAPES = {
    "simple": ((100, 1, 28, 28), (30, 1, 5, 5), 1, 0),
    "deep-1": ((100, 1, 28, 28), (16, 1, 3, 3), 1, 1),
    "deep-2": ((100, 16, 28, 28), (16, 16, 3, 3), 1, 1),
    "deep-4": ((100, 32, 14, 14), (32, 32, 3, 3), 1, 2),
    # (a new name: until December 2026 "deep-6" ran at 7x7, which DeepConvNet never does,
    # and an asv series that changed its shape would show a false step)
    "deep-6-8x8": ((100, 64, 8, 8), (64, 64, 3, 3), 1, 1),
}


def best_time(fn, repeat=5, min_time=0.2):
    """Best seconds per call over `repeat` rounds, each of enough calls to last min_time."""
    fn()  # warm-up: compiles on first use
    number, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / repeat or number >= 1 << 12:
            break
        number *= 2
    best = elapsed / number
    for _ in range(repeat - 1):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def kernel_cases(shape_name, dtype, rng):
    """{case name: function(kernel_module)} for one convolution geometry."""
    x_shape, w_shape, stride, pad = CONV_SHAPES[shape_name]
    x = rng.standard_normal(x_shape).astype(dtype)
    W = (0.1 * rng.standard_normal(w_shape)).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    FN, C, FH, FW = w_shape
    ref = kernels("numpy")
    out, ctx = ref.conv2d_forward(x, W, b, stride, pad)
    out = np.ascontiguousarray(out)
    dcol = rng.standard_normal(ref.im2col(x, FH, FW, stride, pad).shape).astype(dtype)
    pooled, argmax = ref.maxpool_forward(out, 2, 2, 2, 0)
    dpool = rng.standard_normal(pooled.shape).astype(dtype)
    _, mask = ref.relu_forward(out)
    contexts = {}

    def forward_ctx(k):
        # what each backend's forward pass hands to its backward pass, computed once
        if k.__name__ not in contexts:
            contexts[k.__name__] = k.conv2d_forward(x, W, b, stride, pad)[1]
        return contexts[k.__name__]

    return {
        "im2col": lambda k: k.im2col(x, FH, FW, stride, pad),
        "col2im": lambda k: k.col2im(dcol, x_shape, FH, FW, stride, pad),
        "conv forward": lambda k: k.conv2d_forward(x, W, b, stride, pad),
        "conv backward": lambda k: k.conv2d_backward(out, x, W, forward_ctx(k), stride, pad, True),
        "maxpool forward": lambda k: k.maxpool_forward(out, 2, 2, 2, 0),
        "maxpool backward": lambda k: k.maxpool_backward(dpool, argmax, out.shape, 2, 2, 2, 0),
        "relu forward": lambda k: k.relu_forward(out),
        "relu backward": lambda k: k.relu_backward(out.copy(), mask),
    }


def layer_cases(shape_name, dtype, rng):
    """Forward + backward of Convolution, Relu and Pooling at one geometry."""
    from fastconv.layers import Convolution, Pooling, Relu
    x_shape, w_shape, stride, pad = CONV_SHAPES[shape_name]
    x = rng.standard_normal(x_shape).astype(dtype)
    conv = Convolution((0.1 * rng.standard_normal(w_shape)).astype(dtype),
                       np.zeros(w_shape[0], dtype), stride, pad)
    relu, pool = Relu(), Pooling(2, 2, stride=2)

    def step(layer, inp):
        out = layer.forward(inp)
        layer.backward(np.ones_like(out))
        return out

    h = conv.forward(x)
    return {
        "Convolution fwd+bwd": lambda k: step(conv, x),
        "Relu fwd+bwd": lambda k: step(relu, h),
        "Pooling fwd+bwd": lambda k: step(pool, h),
    }


def run(shape_names, dtypes, layers=True, out=print):
    from fastconv.backend import using_backend
    rows = []
    for dtype in dtypes:
        for shape_name in shape_names:
            rng = np.random.default_rng(0)
            cases = kernel_cases(shape_name, dtype, rng)
            timings = {}
            for case, fn in cases.items():
                timings[case] = tuple(best_time(lambda: fn(kernels(b))) for b in ("numpy", "numba"))
            if layers:
                for case, fn in layer_cases(shape_name, dtype, rng).items():
                    pair = []
                    for name in ("numpy", "numba"):
                        with using_backend(name):
                            pair.append(best_time(lambda: fn(None)))
                    timings[case] = tuple(pair)
            for case, (t_np, t_nb) in timings.items():
                rows.append((np.dtype(dtype).name, shape_name, case, t_np, t_nb))
                out(f"{np.dtype(dtype).name:8s} {shape_name:7s} {case:22s} "
                    f"numpy {t_np * 1e3:9.3f} ms  numba {t_nb * 1e3:8.3f} ms  "
                    f"speed-up {t_np / t_nb:6.1f}x")
    return rows


def network_cases(dtype, rng):
    """{name: (function, repeats)} for whole-network workloads at batch 100, as Trainer runs them."""
    from fastconv.deep_convnet import DeepConvNet
    from fastconv.optimizer import Adam
    from fastconv.simple_convnet import SimpleConvNet
    x = rng.random((100, 1, 28, 28)).astype(np.float32)  # load_mnist's float32 images
    t = rng.integers(0, 10, 100)
    x_test = rng.random((10000, 1, 28, 28)).astype(np.float32)
    t_test = rng.integers(0, 10, 10000)
    cases = {}
    for name, net in (("SimpleConvNet step", SimpleConvNet(dtype=dtype)),
                      ("DeepConvNet step", DeepConvNet(dtype=dtype))):
        optimizer = Adam(lr=0.001)

        def step(net=net, optimizer=optimizer):
            optimizer.update(net.params, net.gradient(x, t))
        cases[name] = step
    simple = SimpleConvNet(dtype=dtype)
    cases["SimpleConvNet accuracy, 10k"] = lambda: simple.accuracy(x_test, t_test, batch_size=100)
    return cases


def run_networks(dtypes, out=print):
    """Each network workload on both backends, back to back; returns rows like run()."""
    from fastconv.backend import using_backend
    rows = []
    for dtype in dtypes:
        for case, fn in network_cases(dtype, np.random.default_rng(0)).items():
            pair = []
            for name in ("numpy", "numba"):
                with using_backend(name):
                    pair.append(best_time(fn, repeat=3, min_time=0.0))
            rows.append((np.dtype(dtype).name, "net", case, *pair))
            out(f"{np.dtype(dtype).name:8s} {case:30s} numpy {pair[0] * 1e3:9.1f} ms  "
                f"numba {pair[1] * 1e3:8.1f} ms  speed-up {pair[0] / pair[1]:6.1f}x")
    return rows


def main(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(CONV_SHAPES), choices=list(CONV_SHAPES))
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                        choices=["float32", "float64"])
    parser.add_argument("--no-layers", action="store_true", help="time the kernels only")
    parser.add_argument("--nets", action="store_true",
                        help="time whole training steps and inference instead of kernels")
    parser.add_argument("--markdown", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    import numba
    print(f"numba threads: {numba.get_num_threads()}")
    dtypes = [np.dtype(d).type for d in args.dtype]
    if args.nets:
        rows = run_networks(dtypes)
    else:
        rows = run(args.shapes, dtypes, layers=not args.no_layers)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("| dtype | shape | case | NumPy ms | Numba ms | speed-up |\n|---|---|---|---|---|---|\n")
            for dt, shape, case, t_np, t_nb in rows:
                f.write(f"| {dt} | {shape} | {case} | {t_np*1e3:.3f} | {t_nb*1e3:.3f} | {t_np/t_nb:.1f}x |\n")


if __name__ == "__main__":
    main()
