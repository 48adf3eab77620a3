"""Numba kernels: same names, signatures, shapes and dtypes as ``fastconv.kernels.reference``."""
from ._stale_cache import invalidate_if_sources_changed as _invalidate_stale_cache

_invalidate_stale_cache()  # before any kernel can load from Numba's cache
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .dense import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
