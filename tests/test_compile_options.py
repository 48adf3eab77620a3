"""Which helpers are typed into the chunk loops, and on which Numba releases."""
import importlib

import numba
import pytest
from numba.core.registry import CPUDispatcher

# by import_module: the package's own names im2col and col2im are the functions
(compile_options, elementwise, epilogues, im2col, pipeline, pool, weight_gradient,
 winograd) = MODULES = tuple(
    importlib.import_module(f"fastconv.kernels.jit.{name}")
    for name in ("compile_options", "elementwise", "epilogues", "im2col", "pipeline", "pool",
                 "weight_gradient", "winograd"))


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


def test_the_chunk_loops_helpers_follow_the_release_setting():
    helpers = [epilogues.forward_epilogue, epilogues.backward_prologue, pipeline._chunk_im2col,
               im2col._pad_images, im2col._col2im_padded, pool._pool_2x2_stride_2]
    assert {h.targetoptions.get("inline") for h in helpers} == {compile_options.HELPER_INLINE}
