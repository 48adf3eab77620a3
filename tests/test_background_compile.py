"""On an empty cache a helper process compiles the conv backward loop while the forward loop
compiles here (kernels/jit/background_compile.py). Each test runs in a fresh process with an
empty cache of its own, since what is tested is a first compilation."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SETUP = textwrap.dedent("""\
    import os, sys
    import numpy as np
    from fastconv.kernels.jit import background_compile, fused, pipeline

    background_compile._usable_cpus = lambda: 2  # tested on one-CPU machines too

    def block(dtype, kernels=fused, channels=2, direct=False, pooled=True, size=6):
        # the backward pass of a fused conv block, after its forward pass; by im2col with 2
        # channels, by Winograd with 8 in float64 (F(4x4, 3x3) in float32 at 16x16); direct:
        # 1 channel and 5 filters over 8x8 outputs (16x16 in float32, whose vectors are twice
        # as long), with no input gradient, whose weight gradient is summed directly, or
        # behind the pool gathered
        rng = np.random.default_rng(0)
        size, filters = ((16 if dtype == np.float32 else 8), 5) if direct else (size, 4)
        x = rng.standard_normal((3, channels, size, size)).astype(dtype)
        W = rng.standard_normal((filters, channels, 3, 3)).astype(dtype)
        b = rng.standard_normal(filters).astype(dtype)
        if not pooled:
            out, ctx = kernels.conv_relu_forward(x, W, b, 1, 1)
            dout = rng.standard_normal(out.shape).astype(dtype)
            return lambda: kernels.conv_relu_backward(dout, out, x, W, ctx, 1, 1,
                                                      need_dx=not direct)
        out, argmax, ctx = kernels.conv_relu_pool_forward(x, W, b, 1, 1, 2, 2, 2, 0)
        dout = rng.standard_normal(out.shape).astype(dtype)
        return lambda: kernels.conv_relu_pool_backward(dout, out, argmax, x, W, ctx, 1, 1,
                                                       2, 2, 2, 0, need_dx=not direct)
    """)


def _run(tmp_path, code):
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(scratch))
    env.pop("FASTCONV_BACKGROUND_COMPILE", None)
    done = subprocess.run([sys.executable, "-c", SETUP + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert os.listdir(scratch) == []  # no helper folder left behind
    return done.stdout.split()


@pytest.mark.parametrize("loop, channels, dtype", [
    ("im2col", 2, "float64"), ("winograd", 8, "float64"), ("direct", 1, "float32"),
    ("gather", 1, "float64"), ("winograd4", 8, "float32")])  # direct with no pool; behind
# one, gathered
def test_the_first_backward_pass_adopts_the_helpers_loop_with_the_same_bits(tmp_path, loop,
                                                                           channels, dtype):
    # A forked child does not own the helper and compiles the loop itself; its gradients are
    # the reference for the parent's, which come from the adopted loop.
    from fastconv.kernels.jit import pipeline, simd
    if loop in ("direct", "gather") and not (simd.FULL_WIDTH and pipeline.DIRECT_CONV):
        pytest.skip("layers run directly only where compiled code has 512-bit vectors")
    if loop == "winograd4" and not pipeline.WINOGRAD4:
        pytest.skip("F(4x4, 3x3) runs only where compiled code has 512-bit vectors")
    setup = (f"        LOOP = background_compile._backward_loop('{loop}')\n"
             f"        CHANNELS, DIRECT = {channels}, {loop in ('direct', 'gather')}\n"
             f"        DTYPE, POOLED = np.{dtype}, {loop != 'direct'}\n"
             f"        SIZE = {16 if loop == 'winograd4' else 6}\n")
    printed = _run(tmp_path, setup + """\
        backward = block(DTYPE, channels=CHANNELS, direct=DIRECT, pooled=POOLED, size=SIZE)
        print(list(background_compile._pending))
        child = os.fork()
        if child == 0:
            code = 1
            try:  # (without writing to the cache, whose entry the next process must find)
                from numba.core.caching import NullCache
                LOOP._cache = NullCache()
                np.savez("child.npz", *[a for a in backward() if a is not None])
                code = 0 if background_compile.adopted == [] else 2
            finally:
                os._exit(code)
        assert os.waitpid(child, 0)[1] == 0
        mine = [a for a in backward() if a is not None]  # dx is None for direct
        stats = LOOP.stats  # neither compiled here nor read from the cache
        print(background_compile.adopted,
              sum(stats.cache_misses.values()) + sum(stats.cache_hits.values()))
        theirs = np.load("child.npz")
        print(all(np.array_equal(a, theirs[f"arr_{i}"]) for i, a in enumerate(mine)))
        """)
    code = np.dtype(dtype).char
    assert printed == [f"['{loop}-{code}']", f"['{loop}-{code}']", "0", "True"]
    # the adopted loop was saved to the cache: the next process loads it, with no helper
    printed = _run(tmp_path, setup + """\
        backward = block(DTYPE, channels=CHANNELS, direct=DIRECT, pooled=POOLED, size=SIZE)
        backward()
        print(background_compile._pending, background_compile.adopted,
              sum(LOOP.stats.cache_hits.values()))
        """)
    assert printed == ["{}", "[]", "1"]


def test_a_failed_or_slow_helper_leaves_the_loop_to_compile_here(tmp_path):
    # The failed helper's loop compiles here and is checked; the slow one is stopped, and a
    # compile here after it is the same Numba dispatch, so it is not paid for twice.
    printed = _run(tmp_path, """\
        import subprocess, time
        from fastconv.kernels import reference
        commands = iter([[sys.executable, "-c", "raise SystemExit(3)"],
                         [sys.executable, "-c", "import time; time.sleep(60)"]])
        spawn = background_compile._spawn
        helpers = []
        def failing_spawn(dtype, loop):
            process, folder = spawn(dtype, loop)
            process.kill()
            process.wait()
            helpers.append(subprocess.Popen(next(commands)))
            return helpers[-1], folder
        background_compile._spawn = failing_spawn
        background_compile.WAIT_SECONDS = 2
        for got, want in zip(block(np.float32)(), block(np.float32, reference.fused)()):
            assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        background_compile.start(np.float64)
        began = time.monotonic()
        background_compile.finish(np.float64)
        waited = time.monotonic() - began
        print(background_compile.adopted, len(pipeline._backward_chunks.overloads),
              [helper.returncode for helper in helpers], 2 <= waited < 15)
        """)
    assert printed == ["[]", "1", "[3,", "-9]", "True"]


def test_no_helper_with_the_switch_off_or_one_cpu(tmp_path):
    # start() is what a forward pass calls first (the adoption test above sees it start a
    # helper); here it decides against one without compiling anything
    printed = _run(tmp_path, """\
        os.environ["FASTCONV_BACKGROUND_COMPILE"] = "0"
        background_compile.start(np.float64)
        print(background_compile._pending)
        os.environ["FASTCONV_BACKGROUND_COMPILE"] = "1"
        background_compile._usable_cpus = lambda: 1
        background_compile.start(np.float32)
        print(background_compile._pending)
        background_compile._usable_cpus = lambda: 2
        background_compile.start(np.float32, "winograd")
        print(sorted(background_compile._pending))
        background_compile._stop_helpers()
        """)
    assert printed == ["{}", "{}", "['winograd-f']"]
