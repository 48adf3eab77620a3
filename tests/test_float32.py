"""float32 stays float32 inside the compiled kernels, not just in their outputs.

A Python float or int literal in a Numba kernel (``0.0``, ``1``, ``0 if v <= 0 else v``) makes
the arithmetic around it float64: the output is still cast back to float32, so every dtype
test passes, but the loop runs at half the vector width and rounds differently from the
float32 twin. This test compiles every jit kernel for float32 in a fresh process with an
empty Numba cache (cached code cannot be inspected) and searches the LLVM IR for float64
arithmetic and float -> double conversions.
"""
import os
import subprocess
import sys
import textwrap

import pytest

from fastconv.kernels.jit import compile_options, pipeline

# kernel -> why it may use float64: sums accumulated in float64 on purpose
ALLOWED = {
    "_add_row_sums": "conv bias gradient, accumulated in float64",
    "_column_sum": "affine bias gradient, accumulated in float64",
    # LLVM inlines _add_row_sums here; without that call this loop has no float64 (checked)
    "_backward_chunks": "conv pipeline's backward loop, which sums the bias gradient",
    "_add_passing_gradients": "the bias gradient of a pooled Winograd block, in float64",
    # LLVM inlines _add_passing_gradients here; a function of its own only where helpers are
    # not typed into the loops (compile_options)
    "_pooled_gradient_tiles": "the pooled Winograd block's backward, which sums it",
    "_winograd_backward_chunks": "the Winograd backward loop, which sums both",
    "_filter_transform_into": "the Winograd filters G g G^T, from the weights once a call",
    "_filter_gradient_into": "their adjoint G^T dU G, in float64 like the transform",
}

SCRIPT = textwrap.dedent("""
    import json, re
    import numpy as np
    from numba.core.registry import CPUDispatcher
    from fastconv.kernels import jit
    from fastconv.kernels.jit import (conv, elementwise, epilogues, fused, im2col, normalization,
                                      optim, pipeline, pool, winograd)

    f4 = np.float32
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 8, 8)).astype(f4)
    W = rng.standard_normal((5, 3, 3, 3)).astype(f4)
    b = rng.standard_normal(5).astype(f4)
    out, ctx = jit.conv2d_forward(x, W, b, 1, 1)
    jit.conv2d_backward(out, x, W, ctx, 1, 1)
    jit.col2im(jit.im2col(x, 3, 3, 2, 1), x.shape, 3, 3, 2, 1)
    for ph, pw, ps, pp in ((2, 2, 2, 0), (3, 3, 1, 1)):
        p, am = jit.maxpool_forward(out, ph, pw, ps, pp)
        jit.maxpool_backward(p, am, out.shape, ph, pw, ps, pp)
        p, am, c = jit.conv_relu_pool_forward(x, W, b, 1, 1, ph, pw, ps, pp)
        jit.conv_relu_pool_backward(p, p, am, x, W, c, 1, 1, ph, pw, ps, pp)
    r, c = jit.conv_relu_forward(x, W, b, 1, 1)
    jit.conv_relu_backward(r, r, x, W, c, 1, 1)
    pipeline.WINOGRAD_MIN_CHANNELS = 1
    p, am, c = jit.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)  # the pooled tiles
    jit.conv_relu_pool_backward(p, p, am, x, W, c, 1, 1, 2, 2, 2, 0)
    r, c = jit.conv_relu_forward(x, W, b, 1, 1)  # the output transform and its adjoint
    jit.conv_relu_backward(r, r, x, W, c, 1, 1)
    r, mask = jit.relu_forward(x)
    jit.relu_backward(r, mask)
    flat = x.reshape(4, -1)
    A = rng.standard_normal((flat.shape[1], 10)).astype(f4)
    s = jit.affine_forward(flat, A, b[:5].repeat(2))
    jit.affine_backward(s, flat, A)
    t = np.arange(4)
    y, _ = jit.softmax_cross_entropy_forward(s, t)
    jit.softmax_cross_entropy_backward(y, t)
    bn = jit.batchnorm_forward(flat, flat[0], flat[1], f4(1e-6))
    jit.batchnorm_backward(flat, *bn[3:6], flat[0])
    big = rng.standard_normal((100, 700)).astype(f4)  # the parallel builds as well
    bn = jit.batchnorm_forward(big, big[0], big[1], f4(1e-6))
    jit.batchnorm_backward(big, *bn[3:6], big[0])
    jit.relu_backward(*jit.relu_forward(big))
    p = rng.standard_normal(70000).astype(f4)
    for size in (70000, 1000):
        a, g, v, m = (p[:size].copy() for _ in range(4))
        h = f4(0.01)
        jit.sgd_update(a, g, h)
        jit.momentum_update(a, g, v, h, h)
        jit.nesterov_update(a, g, v, h, h)
        jit.adagrad_update(a, g, np.abs(v), h, h)
        jit.rmsprop_update(a, g, np.abs(v), h, h, h)
        jit.adam_update(a, g, m, np.abs(v), h, h, h, h)

    def dispatchers(module):
        for name, value in vars(module).items():
            for label, d in ((name, value), (name + ".parallel", getattr(value, "parallel", None)),
                             (name + ".serial", getattr(value, "serial", None))):
                if isinstance(d, CPUDispatcher):
                    yield label, d

    found = {}
    for module in (conv, elementwise, epilogues, fused, im2col, normalization, optim, pipeline,
                   pool, winograd):
        for label, d in dispatchers(module):
            for sig in d.signatures:
                if "float32" not in str(sig):
                    continue
                ir = d.inspect_llvm(sig)
                boxed = set(re.findall(r"@PyFloat_FromDouble\\(double (%[^)]+)\\)", ir))
                ext = [v for v in re.findall(r"(%\\S+) = fpext (?:float|<\\d+ x float>)", ir)
                       if v not in boxed]
                ops = re.findall(r"= f(?:add|sub|mul|div)\\b[^\\n]*\\bdouble\\b", ir)
                if ext or ops:
                    found[label] = len(ext) + len(ops)
    print(json.dumps(found))
""")


@pytest.mark.slow
def test_jit_kernels_do_no_float64_arithmetic_on_float32_data(tmp_path):
    # no helper process (kernels/jit/background_compile.py): code it compiled, like cached
    # code, has no LLVM IR to inspect here
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), FASTCONV_BACKGROUND_COMPILE="0")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    import json
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    unexpected = {label: n for label, n in found.items()
                  if label.split(".")[0] not in ALLOWED}
    assert not unexpected, f"float64 arithmetic in float32 kernels: {unexpected}"
    # the allow-list is not stale: each entry still does what it says (the compiled conv
    # loop exists only where a BLAS is bound, see fastconv.kernels.jit.blas)
    loops = {"_backward_chunks", "_winograd_backward_chunks"}
    expected = set(ALLOWED) - (set() if pipeline.COMPILED else loops)
    if compile_options.HELPER_INLINE == "always":
        expected.discard("_pooled_gradient_tiles")  # typed into the Winograd backward loop
    assert expected <= {label.split(".")[0] for label in found}
