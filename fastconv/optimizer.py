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
rebound to the updated value, a Python float for a Python number, or a NumPy scalar of the
same type for a NumPy scalar, with the book's float64 bits. The hyperparameters are checked
too, at construction and at every update: ``lr=None`` or ``lr='0.1'`` raises a TypeError.
"""
import numbers

import numpy as np

from fastconv import backend as _backend  # kernels() is looked up per update: switches apply

# np too: the book's module has no __all__, so `from common.optimizer import *` brings np,
# and ch06/optimizer_compare_mnist.py uses it
__all__ = ["np", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]

_EPS = 1e-7  # the book's constant in the denominators of AdaGrad, RMSprop and Adam
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
        raise ValueError(f"grads[{key!r}] has shape {grad.shape} but params[{key!r}] "
                         f"has shape {param.shape}")
    return np.ascontiguousarray(grad, dtype=param.dtype)  # copies only when it must


def _flat(array):
    """(1-D view to hand to a kernel, contiguous copy to write back or None)."""
    if array.flags.c_contiguous:
        return array.reshape(-1), None
    copy = np.ascontiguousarray(array)
    return copy.reshape(-1), copy


class _Optimizer:
    """Shared plumbing: validation, lazily created per-key state, kernel dispatch."""

    _state = ()  # names of the per-key state dicts, e.g. ("m", "v"); each is None at first
    _hyperparameters = ("lr",)  # checked at construction and before every update
    _below_one = ()  # hyperparameters that must lie in [0, 1)

    def _check_hyperparameters(self):
        for name in self._hyperparameters:
            _checked_hyperparameter(name, getattr(self, name), name in self._below_one)

    def _steps(self, params, grads):
        """Check every key, create missing state, then return an iterator of kernel jobs.

        The checks run now, before the caller changes anything (Adam counts ``iter`` only
        after this returns). Each job is ``(kernels, cast, param, grad, states)``: the kernel
        module, the parameter's scalar type for the hyperparameters, and 1-D arrays.
        """
        self._check_hyperparameters()
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
                state = None if store is None else store.get(key)
                if state is not None and (not isinstance(state, np.ndarray)
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

    def _jobs(self, params, checked):
        current = _backend.kernels()
        for key, param, grad, rebind in checked:
            arrays = (param,) + tuple(getattr(self, name)[key] for name in self._state)
            # float16 and longdouble have no Numba kernels: they take the NumPy twins. So do
            # arrays that share memory (a state set to another, a gradient that is the
            # parameter): a fused kernel reads all of an element's operands before it writes
            # any, where the book's statements each read what the one before wrote. SGD's
            # one statement reads as its kernel does, and skips the 2 us check.
            jit = param.dtype in _JIT_DTYPES and not (
                self._state and _share_memory(arrays + (grad,)))
            kernels = current if jit else _backend.kernels("numpy")
            flats = [_flat(a) for a in arrays]
            yield (kernels, param.dtype.type, flats[0][0], grad.reshape(-1),
                   tuple(flat for flat, _ in flats[1:]))
            for array, (_, copy) in zip(arrays, flats):
                if copy is not None:
                    array[...] = copy
            if rebind is not None:  # a number: the book rebinds params[key] too
                params[key] = rebind(param)


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

    def __init__(self, lr=0.01):
        self.lr = lr
        self._check_hyperparameters()

    def update(self, params, grads):
        for k, cast, p, g, _ in self._steps(params, grads):
            k.sgd_update(p, g, cast(self.lr))


class Momentum(_Optimizer):
    """SGD with momentum: v = momentum * v - lr * dW; W += v."""

    _state = ("v",)
    _hyperparameters = ("lr", "momentum")

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None
        self._check_hyperparameters()

    def update(self, params, grads):
        for k, cast, p, g, (v,) in self._steps(params, grads):
            k.momentum_update(p, g, v, cast(self.lr), cast(self.momentum))


class Nesterov(_Optimizer):
    """Nesterov's accelerated gradient, in the book's in-place form as upstream has had it
    since January 2021 ("Fix Nesterov update function"): param moves with the old v, then v
    is updated."""

    _state = ("v",)
    _hyperparameters = ("lr", "momentum")

    def __init__(self, lr=0.01, momentum=0.9):
        self.lr = lr
        self.momentum = momentum
        self.v = None
        self._check_hyperparameters()

    def update(self, params, grads):
        for k, cast, p, g, (v,) in self._steps(params, grads):
            k.nesterov_update(p, g, v, cast(self.lr), cast(self.momentum))


class AdaGrad(_Optimizer):
    """AdaGrad: the step shrinks with the sum of the squared gradients seen so far."""

    _state = ("h",)

    def __init__(self, lr=0.01):
        self.lr = lr
        self.h = None
        self._check_hyperparameters()

    def update(self, params, grads):
        for k, cast, p, g, (h,) in self._steps(params, grads):
            k.adagrad_update(p, g, h, cast(self.lr), cast(_EPS))


class RMSprop(_Optimizer):
    """RMSprop: AdaGrad with an exponentially decaying sum."""

    _state = ("h",)
    _hyperparameters = ("lr", "decay_rate")

    def __init__(self, lr=0.01, decay_rate=0.99):
        self.lr = lr
        self.decay_rate = decay_rate
        self.h = None
        self._check_hyperparameters()

    def update(self, params, grads):
        for k, cast, p, g, (h,) in self._steps(params, grads):
            k.rmsprop_update(p, g, h, cast(self.lr), cast(self.decay_rate), cast(_EPS))


class Adam(_Optimizer):
    """Adam (http://arxiv.org/abs/1412.6980v8), with the book's bias-corrected step size."""

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
        for k, cast, p, g, (m, v) in steps:
            k.adam_update(p, g, m, v, cast(lr_t), cast(self.beta1), cast(self.beta2),
                          cast(_EPS))
