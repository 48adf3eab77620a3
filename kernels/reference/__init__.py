"""Plain-NumPy twins of the jit kernels: same names, signatures, shapes and dtypes."""
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .dense import *  # noqa: F401,F403
from .optim import *  # noqa: F401,F403
from .fused import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
