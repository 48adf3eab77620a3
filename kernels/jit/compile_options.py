"""How the chunk loops' helpers compile: typed into each loop that calls them, where the Numba
release allows it.

Compiled on its own, a helper is optimized by LLVM once for itself and again inside every
function that links it, at each level of calls; typed into its caller (``inline="always"``),
it is compiled once there. Two things follow:

- **Speed from the cache.** The process that compiles a loop ran its helpers' own copies; a
  process that loads the loop from Numba's cache runs the copies optimized again inside it,
  and on an AMD Zen 5 (LLVM 22, Numba 0.68) the copy of the float32 Winograd input transform
  ran 4x slower (100 images of DeepConvNet's 64->64 layer, one thread: 4.46 against
  1.09 ms; calling the helper on its own first brought the loop back to speed). With every
  helper of the Winograd loops typed in, DeepConvNet's float32 step from a warm cache took
  19.9-20.4 ms against 27.5-28.1 ms (2 threads, three alternating rounds); float64 and
  SimpleConvNet moved within their noise. So every helper that a chunk loop reaches is
  typed in (``tests/test_compile_options.py`` walks them).
- **Compile time.** With Numba 0.68 the im2col loops' helpers typed in took SimpleConvNet's
  first float32 step on an empty cache from 8.8-9.0 to 6.6-6.7 s (two alternating pairs,
  helper process on). Typing the Winograd loops' helpers in too moved DeepConvNet's first
  step from 9.6-10.2 s to 8.8-9.6 s (run after SimpleConvNet's, which had compiled the
  im2col loops into the same cache), and SimpleConvNet's by +0.1-0.2 s (two pairs).

Numba 0.58 took 145 s instead of 6.1 s to compile the forward loop with its helpers typed in
(2026-12-04), and the releases between are not measured, so before 0.68 each helper compiles
on its own (and loads from the cache at the slower speed). Helpers with ``fastmath`` flags of
their own are never typed into a caller, which would compile them with the caller's flags.
(``winograd._inverse_transform``, a leaf on 16 scalars that both output transforms share, is
typed in on every release.)
"""
import numba
from numba.extending import overload

__all__ = ["HELPER_INLINE", "compiled_as"]

FIRST_INLINING_RELEASE = (0, 68)


def _release(version):
    """(major, minor) of a version string such as '0.68.1' or '0.69.0rc1'."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = ""
        for character in piece:
            if not character.isdigit():
                break
            digits += character
        parts.append(int(digits or 0))
    return tuple(parts)


HELPER_INLINE = "always" if _release(numba.__version__) >= FIRST_INLINING_RELEASE else "never"


def compiled_as(public, compiled):
    """Has compiled code call `compiled` (an intrinsic or a jitted function) where it calls
    `public`, a plain Python function of the same arguments, which is what Python runs
    (``NUMBA_DISABLE_JIT``, a kernel's ``py_func``)."""
    overload(public)(lambda *args: lambda *args: compiled(*args))
