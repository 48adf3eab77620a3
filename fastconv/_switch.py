"""A process-wide choice among fixed names that a ``with`` block can override for its own
thread: the mode (parity/fast) and the backend (numba/numpy) are both one."""
import contextvars


class Switch:
    """``set`` changes the choice for every thread; ``using`` only for the thread (or asyncio
    task) that runs the block, so a block in one thread never changes another's work."""

    def __init__(self, what, choices, initial, source=None):
        self.what, self.choices = what, tuple(choices)
        self._global = self.checked(initial, source or what)
        self._local = contextvars.ContextVar("fastconv_" + what, default=None)

    def checked(self, name, source=None):
        if not isinstance(name, str) or name.strip().lower() not in self.choices:
            raise ValueError(f"{source or self.what} must be one of {self.choices}; "
                             f"got {name!r}")
        return name.strip().lower()

    def set(self, name):
        self._global = self.checked(name)

    def get(self):
        return self._local.get() or self._global

    def using(self, name):
        return _Using(self._local, self.checked(name))


class _Using:
    """The ``with`` block of ``Switch.using``: a class, not a generator, because networks
    enter one per call on small batches, where a generator's set-up cost shows."""

    __slots__ = ("_var", "_name", "_token")

    def __init__(self, var, name):
        self._var, self._name = var, name

    def __enter__(self):
        self._token = self._var.set(self._name)

    def __exit__(self, *exc):
        self._var.reset(self._token)
        return False
