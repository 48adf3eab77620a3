"""How the chunk loops' helpers compile: typed into each loop that calls them, where the Numba
release allows it.

Compiled on its own, a helper is optimized by LLVM once for itself and again inside every
function that links it, at each level of calls; typed into its caller (``inline="always"``),
it is compiled once there. With Numba 0.68 the im2col loops' helpers typed in took
SimpleConvNet's first float32 step on an empty cache from 8.8-9.0 to 6.6-6.7 s (two
alternating pairs, helper process on; the forward loop alone compiled in 5.1 s instead of
6.2), with the steps' times unchanged within 3%. Numba 0.58 took 145 s instead of 6.1 s to
compile the forward loop that way (2026-12-04), and the releases between are not measured,
so before 0.68 each helper compiles on its own. Helpers with ``fastmath`` flags of their own
are never typed into a caller, which would compile them with the caller's flags. The
Winograd loops' helpers stay on their own: typed in, DeepConvNet's first step took 18.6
against 19.0 s, one run each. (One exception on every release: ``winograd._inverse_transform``,
a leaf on 16 scalars that both output transforms share.)
"""
import numba

__all__ = ["HELPER_INLINE"]

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
