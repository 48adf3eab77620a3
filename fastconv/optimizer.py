"""The book's optimizers (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam), one fused kernel each.

A drop-in for ``common/optimizer.py``: same classes, constructor defaults, public attributes
and ``update(params, grads)``, with the parameters and the state arrays updated in place (the
layers hold references to the very same arrays). Each parameter costs one call to the current
backend's kernel (``fastconv.backend.kernels()``, looked up at every update), and float64
results are the book's to the last bit.

Differences from the book, all on inputs it would mishandle: everything is checked before
anything is written, so a bad call raises (naming the key) and leaves params and state as
they were; float32 parameters stay float32 all the way (the hyperparameters are cast to the
parameter's dtype, and a gradient of another dtype is cast to it); and a parameter that is not
C-contiguous is updated through a contiguous copy that is then written back into it.

Like the book's, the optimizers also take plain numbers (``params = {'x': -7.0}``, as in
ch06/optimizer_compare_naive.py): a number cannot be updated in place, so ``params[key]`` is
rebound to the updated value, of the type the book's arithmetic gives: a Python float for a
Python number under SGD, an ``np.float64`` under the optimizers with state (whose arrays
meet the number in the book), a NumPy scalar of the same type for a NumPy scalar, with the
book's float64 bits. The hyperparameters are checked too, at construction and at every
update: ``lr=None`` or ``lr='0.1'`` raises a TypeError.
"""
import functools
from collections.abc import Mapping
import numbers
import operator

import numpy as np

from fastconv import backend as _backend  # kernels() is looked up per update: switches apply

# np too: the book's module has no __all__, so `from common.optimizer import *` brings np,
# and ch06/optimizer_compare_mnist.py uses it
__all__ = ["np", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]

_EPS = 1e-7  # the book's constant in the denominators of AdaGrad, RMSprop and Adam
_MISSING = object()  # a state store's entry for a key it lacks
_JIT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_real_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _checked_hyperparameter(name, value, below_one=False):
    """A finite real number (beta1 and beta2 of Adam also in [0, 1)), else TypeError/ValueError."""
    if not _is_real_number(value):
        raise TypeError(f"{name} must be a real number; got {value!r}")
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if below_one and not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1); got {value!r}")
    return value


def _param_array(key, param):
    """(array to update, how to rebind params[key] afterwards or None if in place).

    A number is updated through a 0-d array: float64 for a Python number (the book's
    arithmetic), its own dtype for a NumPy floating scalar.
    """
    if isinstance(param, np.ndarray):
        if param.dtype.kind != "f":
            raise TypeError(f"params[{key!r}] must be a floating-point numpy array or a "
                            f"number, got dtype {param.dtype}")
        if not param.flags.writeable:
            raise ValueError(f"params[{key!r}] is read-only and cannot be updated in place")
        return param, None
    if isinstance(param, np.floating):
        return np.array(param), lambda array: array[()]
    if _is_real_number(param):  # Python numbers and NumPy integers
        return np.array(float(param)), lambda array: float(array[()])
    raise TypeError(f"params[{key!r}] must be a floating-point numpy array or a number, "
                    f"got {type(param).__name__}")


def _as_float64(rebind):
    return lambda array: np.float64(rebind(array))


def _checked_grad(key, param, grads):
    """The gradient of ``param`` as a C-contiguous array of its dtype, after checking it."""
    if key not in grads:
        raise KeyError(f"grads has no entry for params key {key!r}")
    grad = np.asarray(grads[key])
    if grad.dtype.kind not in "biuf":
        raise TypeError(f"grads[{key!r}] must be a real numeric array, got dtype {grad.dtype}")
    if grad.shape != param.shape:
        try:
            fits = np.broadcast_shapes(grad.shape, param.shape) == param.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"grads[{key!r}] has shape {grad.shape} but params[{key!r}] "
                             f"has shape {param.shape}, to which it does not broadcast")
        # the book's `param -= lr * grad` broadcasts a gradient of one value per row or column
        grad = np.broadcast_to(grad, param.shape)
    return np.ascontiguousarray(grad, dtype=param.dtype)  # copies only when it must


def _flat(array, copies):
    """A 1-D view of array for a kernel; a non-contiguous array is given as a contiguous copy,
    which is added to ``copies`` as (array, copy), to be written back."""
    if array.flags.c_contiguous:
        return array.reshape(-1)
    copy = np.ascontiguousarray(array)
    copies.append((array, copy))
    return copy.reshape(-1)


def _write_back(params, key, param, copies, rebind):
    """What follows a kernel that ran on copies or on a number's 0-d array: the copies go
    back into their arrays, and ``params[key]`` is rebound to the number's new value."""
    for array, copy in copies:
        array[...] = copy
    if rebind is not None:
        params[key] = rebind(param)


class _Optimizer:
    """Shared plumbing: validation, lazily created per-key state, kernel dispatch."""

    _state = ()  # names of the per-key state dicts, e.g. ("m", "v"); each is None at first
    _hyperparameters = ("lr",)  # checked at construction and before every update
    _below_one = ()  # hyperparameters that must lie in [0, 1)
    _kernel = None  # the name of the update in the kernel modules, e.g. "sgd_update"
    _checked_values = ()  # the hyperparameter objects of the last successful check

    def _check_hyperparameters(self):
        values = tuple(getattr(self, name) for name in self._hyperparameters)
        # numbers are immutable: the same objects as last time need no second check, which
        # took a microsecond an update (a tenth of a TwoLayerNet SGD update)
        if len(values) == len(self._checked_values) and all(
                map(operator.is_, values, self._checked_values)):
            return
        for name, value in zip(self._hyperparameters, values):
            _checked_hyperparameter(name, value, name in self._below_one)
        self._checked_values = values

    def update(self, params, grads):
        self._run(self._steps(params, grads),
                  tuple(getattr(self, name) for name in self._hyperparameters))

    def _run(self, jobs, scalars):
        """Each job's kernel, with the scalars cast to its parameter's dtype (a Python float
        would make a float32 update run in float64)."""
        casts = {}
        for kernels, dtype, param, grad, states, finish in jobs:
            cast = casts.get(dtype)
            if cast is None:
                cast = casts[dtype] = tuple(map(dtype.type, scalars))
            getattr(kernels, self._kernel)(param, grad, *states, *cast)
            if finish is not None:
                finish()

    def _steps(self, params, grads):
        """Check every key, create missing state, then return the kernel jobs.

        Nothing is written before every check has passed (Adam counts ``iter`` only after
        this returns). Each job is ``(kernels, dtype, param, grad, states, finish)``: the
        kernel module, the parameter's dtype and 1-D arrays, and None or what to run after
        the kernel (write a non-contiguous array back from its copy, rebind a number).
        """
        self._check_hyperparameters()
        for name, value in (("params", params), ("grads", grads)):
            if type(value) is not dict and not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a dict of arrays (the network's keys); got "
                                f"{type(value).__name__}")
        jobs = self._plain_jobs(params, grads)
        if jobs is not None:
            return jobs
        checked = []
        for key in params.keys():
            param, rebind = _param_array(key, params[key])
            if rebind is not None and not isinstance(params[key], np.floating) and (
                    self._state or isinstance(grads.get(key), (np.ndarray, np.generic))):
                # in the book's code a Python float meets a NumPy state array (v, h, m) or a
                # NumPy gradient and comes out np.float64; SGD on plain floats stays float
                rebind = _as_float64(rebind)
            checked.append((key, param, _checked_grad(key, param, grads), rebind))
        for name in self._state:
            store = getattr(self, name)
            for key, param, _, _ in checked:
                # a key the store lacks gets zeros below; one it holds must be the array
                state = _MISSING if store is None else store.get(key, _MISSING)
                if state is not _MISSING and (not isinstance(state, np.ndarray)
                                          or state.shape != param.shape
                                          or state.dtype != param.dtype):
                    found = (f"shape {state.shape} and dtype {state.dtype}"
                             if isinstance(state, np.ndarray) else type(state).__name__)
                    raise ValueError(
                        f"{name}[{key!r}] has {found} but params[{key!r}] "
                        f"has shape {param.shape} and dtype {param.dtype}")
        for name in self._state:
            if getattr(self, name) is None:
                setattr(self, name, {})
            store = getattr(self, name)
            for key, param, _, _ in checked:
                if key not in store:
                    store[key] = np.zeros_like(param, order="C")
        return self._jobs(params, checked)

    def _plain_jobs(self, params, grads):
        """The jobs where every parameter, gradient and state is what a network and this
        optimizer make: C-contiguous float32 or float64 arrays of one dtype and shape per
        key, the parameters writable, no state missing or sharing memory. Else None, and
        ``_steps`` checks each key and says what is wrong: the general path's checks and
        copies took 7 us of a TwoLayerNet SGD update of 11 (4 parameters)."""
        kernels = _backend.kernels()
        stores = [getattr(self, name) for name in self._state]
        jobs = []
        for key, param in params.items():
            grad = grads.get(key)
            if (type(param) is not np.ndarray or type(grad) is not np.ndarray
                    or param.dtype not in _JIT_DTYPES or grad.dtype != param.dtype
                    or grad.shape != param.shape or not grad.flags.c_contiguous):
                return None
            flags = param.flags
            if not (flags.c_contiguous and flags.writeable):
                return None
            states = []
            for store in stores:
                state = None if store is None else store.get(key)
                if (type(state) is not np.ndarray or state.dtype != param.dtype
                        or state.shape != param.shape or not state.flags.c_contiguous):
                    return None
                states.append(state.reshape(-1))
            if states and _share_memory([param, grad] + states):
                return None
            jobs.append((kernels, param.dtype, param.reshape(-1), grad.reshape(-1), states,
                         None))
        return jobs

    def _jobs(self, params, checked):
        current = _backend.kernels()
        stores = [getattr(self, name) for name in self._state]
        jobs = []
        for key, param, grad, rebind in checked:
            arrays = [param] + [store[key] for store in stores]
            # float16 and longdouble have no Numba kernels: they take the NumPy twins. So do
            # arrays that share memory (a state set to another, a gradient that is the
            # parameter): a fused kernel reads all of an element's operands before it writes
            # any, where the book's statements each read what the one before wrote. SGD's
            # one statement reads as its kernel does, and skips the 2 us check.
            jit = param.dtype in _JIT_DTYPES and not (
                stores and _share_memory(arrays + [grad]))
            kernels = current if jit else _backend.kernels("numpy")
            copies = []
            flats = [_flat(a, copies) for a in arrays]
            finish = None
            if rebind is not None or copies:
                finish = functools.partial(_write_back, params, key, param, copies, rebind)
            jobs.append((kernels, param.dtype, flats[0], grad.reshape(-1), flats[1:], finish))
        return jobs


def _memory_owner(array):
    """The ndarray that owns array's memory, or None where no ndarray owns it (a buffer, a
    memory map, an array made by other code)."""
    while array.base is not None:
        array = array.base
        if not isinstance(array, np.ndarray):
            return None
    return array if array.flags.owndata else None


def _share_memory(arrays):
    # arrays whose memory belongs to distinct ndarrays cannot overlap: the usual case
    # (parameters, the optimizer's own state, new gradients) needs no check of each pair,
    # which took 1.8 us a parameter for Adam
    owners = {id(owner) for owner in map(_memory_owner, arrays) if owner is not None}
    if len(owners) == len(arrays):
        return False
    return any(np.may_share_memory(a, b)
               for i, a in enumerate(arrays) for b in arrays[i + 1:])


def _checked_iter(value):
    """Adam's step count so far: a non-negative integer."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"iter must be a non-negative integer; got {value!r}")
    if value < 0:
        raise ValueError(f"iter must be a non-negative integer; got {value!r}")
    return value


class SGD(_Optimizer):
    """Stochastic gradient descent: W -= lr * dW."""

    _kernel = "sgd_update"

    def __init__(self, lr=0.01):
        self.lr = lr
        self._check_hyperparameters()


class Momentum(_Optimizer):
    """SGD with momentum: v = momentum * v - lr * dW; W += v."""

    _kernel = "momentum_update"
    _state = ("v",)
    _hyperparameters = ("lr", "momentum")

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None
        self._check_hyperparameters()


class Nesterov(_Optimizer):
    """Nesterov's accelerated gradient, in the book's in-place form as upstream has had it
    since January 2021 ("Fix Nesterov update function"): param moves with the old v, then v
    is updated."""

    _kernel = "nesterov_update"
    _state = ("v",)
    _hyperparameters = ("lr", "momentum")

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None
        self._check_hyperparameters()


class AdaGrad(_Optimizer):
    """AdaGrad: the step shrinks with the sum of the squared gradients seen so far."""

    _kernel = "adagrad_update"
    _state = ("h",)

    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None
        self._check_hyperparameters()

    def update(self, params, grads):
        self._run(self._steps(params, grads), (self.lr, _EPS))


class RMSprop(_Optimizer):
    """RMSprop: AdaGrad with an exponentially decaying sum."""

    _kernel = "rmsprop_update"
    _state = ("h",)
    _hyperparameters = ("lr", "decay_rate")

    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None
        self._check_hyperparameters()

    def update(self, params, grads):
        self._run(self._steps(params, grads), (self.lr, self.decay_rate, _EPS))


class Adam(_Optimizer):
    """Adam (http://arxiv.org/abs/1412.6980v8), with the book's bias-corrected step size."""

    _kernel = "adam_update"
    _state = ("m", "v")
    _hyperparameters = ("lr", "beta1", "beta2")
    _below_one = ("beta1", "beta2")  # the bias correction divides by 1 - beta1**iter

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999):
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.iter = 0
        self.m = None
        self.v = None
        self._check_hyperparameters()

    def update(self, params, grads):
        step = _checked_iter(self.iter) + 1
        steps = self._steps(params, grads)  # raises before iter moves on a bad call
        lr_t = self.lr * np.sqrt(1.0 - self.beta2**step) / (1.0 - self.beta1**step)
        self.iter = step
        self._run(steps, (lr_t, self.beta1, self.beta2, _EPS))
