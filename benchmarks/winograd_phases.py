#!/usr/bin/env python
"""Where a Winograd block's time goes: each phase of DeepConvNet's Winograd layers alone.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        python benchmarks/winograd_phases.py [--dtype float32|float64|both] [--rounds 5]

The im2col blocks have ``dtype_ratio.py``; this is the same idea for the five layers of
DeepConvNet that run by Winograd F(2x2, 3x3) (``kernels/jit/winograd.py``): random inputs of
each layer's shape, 100 images, and every phase of ``pipeline._winograd_forward_chunks`` and
``_winograd_backward_chunks`` looped over the batch in the pipeline's chunks by one compiled
driver (no Python between chunks). One Numba and one BLAS thread, set here before either is
imported; the table gives each phase's best time over ``--rounds`` rounds. The backward pass
runs the input transform again, so a block's total counts it twice. Each round runs the
phases in the pipeline's order, so a phase finds the batch's arrays where the phases before
it left them, as in a training step: the input adjoint, for one, writes an input gradient of
5 MB (float32, 100 images of 16x28x28) that the other phases have pushed out of the caches.

In float32 the three pooled layers now run by F(4x4, 3x3) in a training step
(``kernels/jit/winograd4.py``); this script times their F(2x2, 3x3) phases, what
``FASTCONV_WINOGRAD4=0`` runs.

Not an asv suite: it imports nothing heavy at module level.
"""
import argparse
import os
import sys
import time

# (label, input channels, filters, input size, pad, pooled): DeepConvNet's Winograd layers
LAYERS = (("16->16 at 28x28 +pool", 16, 16, 28, 1, True),
          ("16->32 at 14x14", 16, 32, 14, 1, False),
          ("32->32 pad 2 at 14x14 +pool", 32, 32, 14, 2, True),
          ("32->64 at 8x8", 32, 64, 8, 1, False),
          ("64->64 at 8x8 +pool", 64, 64, 8, 1, True))
FORWARD = ("input transform", "16 GEMMs forward", "pooled output tiles", "output transform",
           "epilogue")
BACKWARD = ("pooled gradient tiles", "prologue", "output adjoint", "row sums (db)",
            "16 GEMMs dU", "16 GEMMs dV", "input adjoint")
PHASES = FORWARD + BACKWARD
POOLED_ONLY = {"pooled output tiles", "pooled gradient tiles"}
UNPOOLED_ONLY = {"output transform", "epilogue", "prologue", "output adjoint", "row sums (db)"}
_driver = None


def phases_of(pooled):
    """The phases a block runs, in the pipeline's order."""
    skip = UNPOOLED_ONLY if pooled else POOLED_ONLY
    return [name for name in PHASES if name not in skip]


def phase_driver():
    """drive(phase, x, U, chunk, geometry, scratch, epilogue, prologue, dU, db, dx): one
    phase (an index into PHASES) of the Winograd chunk loops, over all chunks of x."""
    global _driver
    if _driver is None:
        from numba import njit
        from fastconv.kernels.jit.blas import gemm
        from fastconv.kernels.jit.epilogues import (_add_row_sums, backward_prologue,
                                                    forward_epilogue)
        from fastconv.kernels.jit.pipeline import _by_window, _chunk_views, _transformed_chunk
        from fastconv.kernels.jit.winograd import (_input_transform_adjoint, _output_transform,
                                                   _output_transform_adjoint,
                                                   _pooled_gradient_tiles,
                                                   _pooled_output_tiles, tiles_hw)

        @njit(nogil=True)
        def drive(phase, x, U, chunk, geometry, scratch, epilogue, prologue, dU, db, dx):
            pad, conv_h, conv_w = geometry[3], geometry[4], geometry[5]
            tiles_h, tiles_w = tiles_hw(conv_h, conv_w)
            kind, b, pool, out, argmax = epilogue
            pkind, _, dout, _, _ = prologue
            xp, down = scratch[3], scratch[4]
            FN = U.shape[1]
            for n0 in range(0, x.shape[0], chunk):
                n1 = min(n0 + chunk, x.shape[0])
                V, M, rows, T = _chunk_views(x, n0, n1, geometry, scratch, FN)
                if phase == 0:
                    _transformed_chunk(x, n0, n1, geometry, scratch, FN)
                elif phase == 1:
                    for k in range(16):
                        gemm(U[k], False, V[k, :, :T], False, M[k, :, :T], 0)
                elif phase == 2:
                    _pooled_output_tiles(M, n0, n1, b, _by_window(out), _by_window(argmax),
                                         True)
                elif phase == 3:
                    _output_transform(M, n1 - n0, tiles_h, tiles_w, conv_h, conv_w, rows)
                elif phase == 4:
                    forward_epilogue(kind, rows, n0, conv_h, conv_w, b, pool, out, argmax,
                                     False)
                elif phase == 5:
                    _pooled_gradient_tiles(_by_window(dout), _by_window(out),
                                           _by_window(argmax), n0, n1, M, db)
                elif phase == 6:
                    backward_prologue(pkind, n0, n1, conv_h, conv_w, pool, dout, out, argmax,
                                      rows, False)
                elif phase == 7:
                    _output_transform_adjoint(rows, n1 - n0, tiles_h, tiles_w, conv_h, conv_w,
                                              M)
                elif phase == 8:
                    _add_row_sums(rows, db)
                elif phase == 9:
                    for k in range(16):
                        gemm(M[k, :, :T], False, V[k, :, :T], True, dU[k], 1)
                elif phase == 10:
                    for k in range(16):
                        gemm(U[k], True, M[k, :, :T], False, V[k, :, :T], 0)
                elif phase == 11:
                    _input_transform_adjoint(V, n1 - n0, tiles_h, tiles_w, pad, dx, n0, down)
        _driver = drive
    return _driver


def operands(C, FN, size, pad, pooled, dtype, images=100, seed=0):
    """(the arguments of drive after the phase, the filters W) for one layer: random input
    and filters, the epilogue and prologue as the fused block gives them."""
    import numpy as np
    from fastconv.kernels.jit import epilogues as ep
    from fastconv.kernels.jit.pipeline import _winograd_operands, _winograd_scratch
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((images, C, size, size)).astype(dtype)
    W = (rng.standard_normal((FN, C, 3, 3)) / (3 * np.sqrt(C))).astype(dtype)
    b = (0.1 * rng.standard_normal(FN)).astype(dtype)
    conv = size + 2 * pad - 2
    geometry = (3, 3, 1, pad, conv, conv)
    U, chunk = _winograd_operands(x, W, geometry)
    scratch = _winograd_scratch(x, FN, geometry, chunk)
    side = conv // 2 if pooled else conv
    out = np.empty((images, FN, side, side), dtype)
    argmax = np.zeros(out.shape, np.intp) if pooled else ep.NO_ARGMAX
    dout = rng.standard_normal(out.shape).astype(dtype)
    pool = (2, 2, 2, 0) if pooled else ep.NO_POOL
    epilogue = (ep.OUTPUT_RELU_POOL if pooled else ep.OUTPUT_RELU, b, pool, out, argmax)
    prologue = (ep.GRADIENT_RELU_POOL if pooled else ep.GRADIENT_RELU, pool, dout, out, argmax)
    dU = np.zeros(U.shape, dtype)
    return (x, U, chunk, geometry, scratch, epilogue, prologue, dU, np.zeros(FN),
            np.empty_like(x)), W


def measure_layer(layer, dtype, rounds):
    """{phase: best seconds} for one layer of LAYERS."""
    _, C, FN, size, pad, pooled = layer
    args, _ = operands(C, FN, size, pad, pooled, dtype)
    drive = phase_driver()
    names = phases_of(pooled)
    for name in names:  # compile, and leave every buffer as the pipeline would
        drive(PHASES.index(name), *args)
    best = {name: float("inf") for name in names}
    for _ in range(rounds):
        for name in names:
            start = time.perf_counter()
            drive(PHASES.index(name), *args)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def markdown(results, dtype):
    """A table of phases (rows) by layers (columns), in microseconds."""
    labels = [layer[0] for layer in LAYERS]
    lines = [f"{dtype}, one thread, 100 images, best of the rounds (us):", "",
             "| phase | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for name in PHASES:
        cells = [f"{results[label][name] * 1e6:.0f}" if name in results[label] else ""
                 for label in labels]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [sum(results[label].values()) + results[label]["input transform"]
              for label in labels]
    lines.append("| **total** (input transform twice) | "
                 + " | ".join(f"**{t * 1e6:.0f}**" for t in totals) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="float32")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    for name in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    if "numba" in sys.modules:
        raise RuntimeError("winograd_phases: run it on its own (Numba already imported)")
    dtypes = ["float32", "float64"] if args.dtype == "both" else [args.dtype]
    for dtype in dtypes:
        results = {layer[0]: measure_layer(layer, dtype, args.rounds) for layer in LAYERS}
        print(markdown(results, dtype))
        print()


if __name__ == "__main__":
    main()
