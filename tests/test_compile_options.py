"""Which helpers are typed into the chunk loops, and on which Numba releases."""
import importlib

import numba
import pytest
from numba.core.registry import CPUDispatcher

# by import_module: the package's own names im2col and col2im are the functions
(compile_options, elementwise, epilogues, im2col, pipeline, pool, weight_gradient,
 winograd, winograd4) = MODULES = tuple(
    importlib.import_module(f"fastconv.kernels.jit.{name}")
    for name in ("compile_options", "elementwise", "epilogues", "im2col", "pipeline", "pool",
                 "weight_gradient", "winograd", "winograd4"))


@pytest.mark.parametrize("version, release", [("0.68.1", (0, 68)), ("0.58.1", (0, 58)),
                                              ("0.69.0rc1", (0, 69)), ("1.0", (1, 0)),
                                              ("0.70.0.dev0+12", (0, 70))])
def test_release_reads_major_and_minor(version, release):
    assert compile_options._release(version) == release


def test_releases_before_the_first_measured_one_compile_helpers_on_their_own():
    assert compile_options._release("0.58.1") < compile_options.FIRST_INLINING_RELEASE
    expected = ("always" if compile_options._release(numba.__version__)
                >= compile_options.FIRST_INLINING_RELEASE else "never")
    assert compile_options.HELPER_INLINE == expected


def _kernels():
    for module in MODULES:
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.__module__ == module.__name__:
                yield f"{module.__name__}.{name}", value.targetoptions


def test_no_helper_typed_into_a_caller_has_fastmath_flags_of_its_own():
    # typed into its caller, it would compile with the caller's flags instead
    typed_in = [name for name, options in _kernels()
                if options.get("inline", "never") != "never"]
    assert typed_in, "no helper is marked for inlining"
    flagged = [name for name, options in _kernels()
               if options.get("inline", "never") != "never" and options.get("fastmath")]
    assert not flagged


def _helpers_of(kernel, found):
    """Every compiled function that kernel calls, directly or through its helpers."""
    code = kernel.py_func
    for name in code.__code__.co_names:
        value = code.__globals__.get(name)
        if isinstance(value, CPUDispatcher) and value not in found:
            found.add(value)
            _helpers_of(value, found)
    return found


CHUNK_LOOPS = (pipeline._forward_chunks, pipeline._direct_forward_chunks,
               pipeline._backward_chunks, pipeline._winograd_forward_chunks,
               pipeline._winograd_backward_chunks, winograd4.forward_chunks,
               winograd4.backward_chunks)


@pytest.mark.parametrize("loop", CHUNK_LOOPS, ids=lambda loop: loop.py_func.__name__)
def test_every_helper_of_the_chunk_loops_follows_the_release_setting(loop):
    # A helper compiled on its own is linked into each caller and optimized again there; a
    # process that loads the caller from Numba's cache runs that second copy, which ran the
    # float32 Winograd input transform 4x slower (see compile_options). Helpers with
    # fastmath flags of their own cannot be typed in and stay the exception.
    helpers = _helpers_of(loop, set())
    # a helper that every loop calls, so that a walk that missed the helpers fails
    assert (winograd4.input_transform if loop.py_func.__module__ == winograd4.__name__
            else im2col._pad_images) in helpers, "the walk missed the loop's helpers"
    on_their_own = sorted(
        f"{helper.py_func.__module__}.{helper.py_func.__name__}" for helper in helpers
        if helper.targetoptions.get("inline", "never") not in (compile_options.HELPER_INLINE,
                                                              "always")
        and not helper.targetoptions.get("fastmath"))
    assert not on_their_own
