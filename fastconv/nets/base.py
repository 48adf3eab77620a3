"""What the five networks share: the layer walk, loss, backprop, accuracy and parameter I/O.

A network subclass builds its ``params`` in float64 exactly as the book does (same
``np.random.randn`` calls in the same order), hands them to :meth:`Network._init_params`
(which casts them to the net's dtype), builds its layers on ``self.params``, registers which
layer attribute holds which parameter with :meth:`Network._bind`, and calls
:meth:`Network._finish`. Everything else lives here.

Differences from the book, common to every network:

* ``dtype`` (keyword-only, default ``None``: float64 in parity mode, the book's numbers,
  float32 in fast mode; see :mod:`fastconv.mode`): params are drawn in float64 like the book
  and then cast. ``predict`` casts inputs of
  any other dtype to the net's dtype, so float32 nets compute in float32 throughout.
* ``gradient`` keeps the loss of its forward pass in ``last_loss``, so a trainer needs no
  second forward pass. The first layer skips its input gradient (``need_input_grad =
  False``); set it back to True on that layer if you want ``dx`` of the input.
* ``accuracy(x, t, batch_size)`` counts every sample, a last partial batch included, and
  evaluates in chunks of ``batch_size`` (``None``: everything at once) in inference mode.
* ``save_params``/``load_params`` on every net; loading is restricted to NumPy arrays in a
  dict, checks keys and shapes first, and copies values into the existing arrays, so layers
  and ``params`` keep sharing the same objects (see :mod:`fastconv.nets.params_io`).
"""
import contextlib
import threading
from collections.abc import Mapping

import numpy as np

from fastconv import backend as _backend
from fastconv import mode as _mode
from fastconv._validate import check_int, check_real, network_input
from fastconv.gradient import numerical_gradient as _numerical_gradient
from fastconv.kernels.shapes import conv_output_hw
from fastconv.layers import (Affine, BatchNormalization, Dropout, Relu, Sigmoid,
                             SoftmaxWithLoss)
from fastconv.layers.loss import target_labels
from fastconv.layers.chain import BlockChain, chain
from fastconv.layers.fused import ConvReluBlock, fuse
from fastconv.nets import params_io
from fastconv.nets.dense_gradient import fused_gradient, uses_network_methods
from fastconv.nets.shape_walk import check_input_fits

__all__ = ["Network", "he_or_xavier_scale", "conv_pool_geometry", "check_sizes"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# layers whose output has their input's width: the scores' classes are those of the affine
# layer before them
_SAME_WIDTH = (Relu, Sigmoid, Dropout, BatchNormalization)

# In float64, a batch of at most BOOK_BATCH samples runs on the NumPy twins, the book's own
# algorithm. The book's gradient checks (ch05-ch07, 1-3 samples) divide the loss's last bits
# by 2h = 2e-4, so a 1-ulp difference in exp or in a summation order shows in their printed
# digits; with the twins they print the book's. At these sizes the compiled kernels do not
# pay anyway (a loss call is mostly Python either way).
BOOK_BATCH = 8
_NO_SCOPE = contextlib.nullcontext()
# A float64 sum of squares below this is finite whatever the order of its additions (the
# largest float64 is 1.8e308; rounding moves a sum of n terms by about n * 1e-16 of itself).
# Only float64 nets keep a weight decay of 0 (see ``_weight_decay``).
_SQUARES_SUM_LIMIT = 1e300


class Network:
    """Base class of the networks; see the module docstring."""

    # the thread running numerical_gradient's passes after its first, which checked their
    # arguments (another thread's calls meanwhile are checked)
    _checked_for_thread = None

    def _init_params(self, params, dtype):
        """Cast the float64 ``params`` (built like the book's) to ``dtype``."""
        if dtype is None:
            dtype = _mode.default_dtype()
        elif np.dtype(dtype) not in _DTYPES:
            raise TypeError(f"dtype must be np.float32 or np.float64; got {dtype!r}")
        dtype = np.dtype(dtype)
        self.dtype = dtype
        self.params = {key: np.array(value, dtype=dtype) for key, value in params.items()}
        self._slots = []  # (param key, layer, value attr, grad attr), in the grads' order
        self.last_loss = None
        self._backward_follows = False  # True while gradient() runs its forward pass

    def _bind(self, layer, *keys, attrs=("W", "b"), grad_attrs=("dW", "db")):
        """Record that ``layer.<attrs[i]>`` is ``params[keys[i]]`` and its grad is ``grad_attrs[i]``."""
        for key, attr, grad_attr in zip(keys, attrs, grad_attrs):
            self._slots.append((key, layer, attr, grad_attr))

    def _finish(self):
        """Called at the end of a constructor: the first layer need not compute dx."""
        first = self._layer_list()[0]
        if hasattr(first, "need_input_grad"):
            first.need_input_grad = False

    def _rebind(self):
        """Make every layer point at the arrays of ``self.params`` again."""
        for key, layer, attr, _ in self._slots:
            setattr(layer, attr, self.params[key])

    def _state_slots(self):
        """Non-parameter state saved with the params: BatchNorm running statistics.

        Maps e.g. ``running_mean1`` to ``(layer, "running_mean", shape)``.
        """
        slots = {}
        for key, layer, attr, _ in self._slots:
            if isinstance(layer, BatchNormalization) and attr == "gamma":
                suffix = key[len("gamma"):]
                shape = np.shape(layer.gamma)
                slots["running_mean" + suffix] = (layer, "running_mean", shape)
                slots["running_var" + suffix] = (layer, "running_var", shape)
        return slots

    def _layer_list(self):
        layers = self.layers
        return list(layers.values()) if isinstance(layers, dict) else list(layers)

    def _layer_names(self):
        layers = self.layers
        if isinstance(layers, dict):
            return [str(name) for name in layers]
        return [f"layers[{i}] ({type(layer).__name__})" for i, layer in enumerate(layers)]

    # --- the book's API ---------------------------------------------------------------------

    def _small_batch_scope(self, x):
        """The NumPy twins for a small float64 batch (see BOOK_BATCH), else nothing."""
        shape = np.shape(x)
        if (self.dtype == np.float64 and shape and shape[0] <= BOOK_BATCH
                and _backend.get_backend() == "numba"):
            return _backend.using_backend("numpy")
        return _NO_SCOPE

    def predict(self, x, train_flg=False):
        """Scores (before softmax). Dropout and BatchNormalization get ``train_flg``."""
        with self._small_batch_scope(x):
            return self._predict(x, train_flg)

    def _predict(self, x, train_flg):
        x = network_input(x, self.dtype)
        layers = self._layer_list()
        if self._checked_for_thread != threading.get_ident():
            check_input_fits(x.shape, layers, self._layer_names)
        # Convolution -> Relu (-> Pooling) runs go through one fused kernel, and consecutive
        # blocks (with the affine layer after them) through one pass over the batch;
        # backprop walks the same steps back
        steps = chain(fuse(layers))
        with _backend.kernels().blas_scope():
            for step in steps:
                if isinstance(step, (Dropout, BatchNormalization)):
                    x = step.forward(x, train_flg)
                elif isinstance(step, (ConvReluBlock, BlockChain)):
                    # only gradient() backpropagates through the blocks: other forward
                    # passes need no pooling argmax
                    x = step.forward(x, with_argmax=self._backward_follows)
                else:
                    x = step.forward(x)
        self._steps = steps  # (a pass that raised leaves the last one's for its backward)
        return x

    def _weight_decay(self):
        """The L2 factor of the book's MultiLayerNet(Extend), or None where no term is added.

        In float64 the book's arithmetic is kept for a factor of 0 too: its 0 * sum(W**2) is
        NaN once a weight's square overflows, and its weight gradients are new arrays, not the
        layers' own. float32 (fast mode) skips a term of 0."""
        if not hasattr(self, "weight_decay_lambda"):
            return None
        # (an attribute a script may set: None would count as 0, text fail after a pass)
        lam = check_real("weight_decay_lambda", self.weight_decay_lambda)
        return lam if lam or self.dtype == np.float64 else None

    def _check_loss_arguments(self, x, t):
        """Raises, before the forward pass moves any layer (or draws a dropout mask), where t
        cannot be the targets of x, the weight decay is not a number or last_layer is no loss
        layer: the loss would refuse them only after it. t is checked where the classes are
        known: the book's loss on the scores of an affine layer, with only fastconv's layers
        of the same width after it, and no predict of a subclass's or an instance's own (a
        course's layer or method wins)."""
        self._weight_decay()
        if not callable(getattr(self.last_layer, "forward", None)):
            raise TypeError(f"last_layer must be a loss layer with forward(y, t), such as "
                            f"SoftmaxWithLoss; got {type(self.last_layer).__name__}")
        if (type(self.last_layer) is not SoftmaxWithLoss or np.ndim(x) < 2
                or not uses_network_methods(self, Network, ("predict", "_predict"))):
            return
        for layer in reversed(self._layer_list()):
            if type(layer) in _SAME_WIDTH:
                continue
            if type(layer) is Affine and np.ndim(layer.W) == 2:
                target_labels(t, (np.shape(x)[0], np.shape(layer.W)[1]))
            return

    def _loss(self, x, t, train_flg):
        if self._checked_for_thread != threading.get_ident():
            self._check_loss_arguments(x, t)
        with self._small_batch_scope(x):
            y = self.predict(x, train_flg)  # the public method: a subclass's or a wrapper's
            loss = self.last_layer.forward(y, t)
        return self._with_weight_decay(loss)

    def _with_weight_decay(self, loss):
        """The loss with the book's L2 term of MultiLayerNet(Extend) added, if any."""
        lam = self._weight_decay()
        if lam is not None:
            # every constant in the net's dtype: NumPy 1.x makes a float32 scalar combined
            # with a Python number float64
            real = self.dtype.type
            weight_decay = real(0)
            weights = [W for key, W in self.params.items() if key.startswith("W")]
            if not self._zero_decay_of(lam, weights):
                for W in weights:
                    weight_decay += real(0.5) * real(lam) * np.sum(W ** 2)
            loss = loss + weight_decay
        return loss

    @staticmethod
    def _zero_decay_of(lam, weights):
        """True where the book's L2 term is exactly +0.0 whatever is summed: a factor of 0,
        and weights whose squares surely sum to a finite number (then 0 times the sum is
        +0.0; NaN only where it overflows). ``_loss`` then skips the sums (~90 us of a
        float64 MultiLayerNet step) and still adds the +0.0, as the book does."""
        if not (isinstance(lam, (int, float, np.floating)) and lam == 0):
            return False
        # (the jit backend's BLAS pin: OpenBLAS would wake its threads for a long dot product,
        # and they spin on the cores that the next step's kernels need)
        with _backend.kernels().blas_scope():
            for W in weights:
                if type(W) is not np.ndarray or W.dtype != np.float64:
                    return False
                flat = W.reshape(-1)
                # one pass (BLAS's dot product), in another order than the book's sum: a sum
                # far below the largest float is finite in any order; inf and NaN fail it
                if not np.dot(flat, flat) < _SQUARES_SUM_LIMIT:
                    return False
        return True

    def loss(self, x, t):
        """Mean cross-entropy of the softmax of ``predict(x)`` against ``t``."""
        return self._loss(x, t, train_flg=False)

    def _training_loss(self, x, t):
        """``_loss`` in training mode, which moves the BatchNorm running statistics; a pass
        that raises (bad labels are found only after the forward pass) puts them back."""
        def copied(a):
            return None if a is None else np.copy(a)
        saved = [(layer, copied(layer.running_mean), copied(layer.running_var))
                 for layer in self._layer_list() if isinstance(layer, BatchNormalization)]
        try:
            return self._loss(x, t, train_flg=True)
        except BaseException:
            for layer, mean, var in saved:
                layer.running_mean, layer.running_var = mean, var
            raise

    def gradient(self, x, t):
        """Backprop gradients as the book's dict (W1, b1, ...); the loss goes to ``last_loss``.

        The forward pass runs in training mode (dropout masks drawn, batch statistics used),
        as in the book.
        """
        lam = self._weight_decay()
        if lam is not None:
            self._check_decayed_weights()
        with self._small_batch_scope(x), _backend.kernels().blas_scope():
            # (one BLAS pin for the step, not one per GEMM)
            loss = fused_gradient(self, Network, x, t)
            if loss is not None:
                self.last_loss = self._with_weight_decay(loss)
            else:
                self._layer_by_layer_gradient(x, t)
        grads = {}
        for key, layer, _, grad_attr in self._slots:
            grad = getattr(layer, grad_attr)
            if lam is not None and key.startswith("W"):
                grad = _backend.kernels().weight_decay_gradient(grad, self.dtype.type(lam),
                                                                 self.params[key])
            grads[key] = grad
        return grads

    def _layer_by_layer_gradient(self, x, t):
        self._backward_follows = True
        try:
            self.last_loss = self._training_loss(x, t)
        finally:
            self._backward_follows = False
        dout = self.last_layer.backward(1)
        for step in reversed(self._steps):
            dout = step.backward(dout)

    def _check_decayed_weights(self):
        """Each weight that the L2 term adds to its gradient has that gradient's shape: a
        script may have put another array in ``params``. Checked before the step changes
        anything."""
        for key, layer, attr, _ in self._slots:
            if key.startswith("W"):
                given, used = np.shape(self.params[key]), np.shape(getattr(layer, attr))
                if given != used:
                    raise ValueError(
                        f"params[{key!r}] has shape {given}, but the layer it belongs to "
                        f"computes with weights of shape {used}; the weight decay term needs "
                        "the same array in both (assign the layer's attribute too)")

    def numerical_gradient(self, x, t):
        """Central-difference gradients of the training-mode loss, same keys as ``gradient``.

        Slow: for checking ``gradient`` on small networks, in float64.
        """
        def loss_w(_):
            loss = self._loss(x, t, train_flg=True)
            # each later pass has this one's network, x and t, only a parameter's values
            # moved: its checks would pass again, and on the book's 3-sample gradient checks
            # they were a quarter of a pass
            self._checked_for_thread = threading.get_ident()
            return loss
        try:
            return {key: _numerical_gradient(loss_w, self.params[key])
                    for key, _, _, _ in self._slots}
        finally:
            # (another thread's numerical_gradient may have taken the mark meanwhile, or
            # dropped it: this one's passes then checked until their next mark)
            self.__dict__.pop("_checked_for_thread", None)

    def accuracy(self, x, t, batch_size=None):
        """Fraction of samples whose top score is the label; every sample counts.

        ``t`` holds labels or one-hot rows. The images go through ``predict`` (inference mode)
        ``batch_size`` at a time; ``None`` does them all at once.
        """
        t = np.asarray(t)
        if t.ndim not in (1, 2) or t.dtype.kind not in "biuf":
            raise TypeError(f"t must hold labels (N,) or one-hot rows (N, K); got "
                            f"{t.dtype} of shape {t.shape}")
        if t.ndim == 2 and t.shape[1] == 1 and t.dtype.kind in "iu":
            t = t.reshape(-1)  # labels in a column, as the loss reads them too
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        if np.ndim(x) < 1:
            raise TypeError(f"x must be an array of samples (N first); got "
                            f"{type(x).__name__}")
        n = len(x)
        if len(t) != n:
            raise ValueError(f"x has {n} samples but t has {len(t)}")
        if n == 0:
            raise ValueError(f"x holds no samples (shape {np.shape(x)}): the accuracy of an "
                             f"empty set is undefined")
        if batch_size is None:
            batch_size = n
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer or None; got {batch_size!r}")
        correct = 0
        for start in range(0, n, batch_size):
            y = self.predict(x[start:start + batch_size], train_flg=False)
            correct += int(np.sum(np.argmax(y, axis=1) == t[start:start + batch_size]))
        return np.float64(correct / n)  # the book's type: np.sum(...) / float(N)

    def save_params(self, file_name="params.pkl"):
        """Write the params as the book's pickle (a dict of arrays), or ``.npz`` by name."""
        params_io.save_params(self, file_name)

    def load_params(self, file_name="params.pkl"):
        """Load a book-format pickle or ``.npz`` safely into the existing arrays.

        Raises ``pickle.UnpicklingError`` for a pickle naming anything but NumPy arrays and
        dicts, ``ValueError`` for missing/unexpected keys or a wrong shape, ``TypeError`` for a
        non-dict or non-numeric value; in each case the network is left unchanged.
        """
        params_io.load_params(self, file_name)


def he_or_xavier_scale(weight_init_std, fan_in):
    """The book's MLP init scale: 'relu'/'he', 'sigmoid'/'xavier', or a number."""
    name = str(weight_init_std).lower()
    if name in ("relu", "he"):
        return np.sqrt(2.0 / fan_in)
    if name in ("sigmoid", "xavier"):
        return np.sqrt(1.0 / fan_in)
    if isinstance(weight_init_std, str):
        raise ValueError("weight_init_std must be a number, 'relu'/'he' or 'sigmoid'/'xavier'; "
                         f"got {weight_init_std!r}")
    return check_real("weight_init_std", weight_init_std)


def check_sizes(**sizes):
    """Raises unless each is a layer's size, a positive integer. The networks check before
    they draw their weights, so that a bad size leaves np.random as it was."""
    for name, value in sizes.items():
        check_int(name, value, 1)


_CONV_KEYS = ("filter_num", "filter_size", "pad", "stride")


def _check_conv_param(name, conv_param):
    if not isinstance(conv_param, Mapping) or any(key not in conv_param for key in _CONV_KEYS):
        raise ValueError(f"{name} must be a dict with 'filter_num', 'filter_size', 'pad' and "
                         f"'stride'; got {conv_param!r}")
    check_sizes(**{f"{name}[{key!r}]": conv_param[key]
                   for key in ("filter_num", "filter_size", "stride")})
    check_int(f"{name}['pad']", conv_param["pad"], 0)


def conv_pool_geometry(shape, conv_param=None, pool=False, names=("input_dim", "conv_param")):
    """(C, H, W) after a convolution with ``conv_param`` and/or a 2x2, stride-2 max pool;
    names: what the errors call shape and conv_param."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 3:
        raise ValueError(f"{names[0]} must be (C, H, W); got {shape!r}")
    check_sizes(**{f"{names[0]}[{i}]": n for i, n in enumerate(shape)})
    C, H, W = shape
    if conv_param is not None:
        _check_conv_param(names[1], conv_param)
        size = conv_param["filter_size"]
        H, W = conv_output_hw(H, W, size, size, conv_param["stride"], conv_param["pad"])
        C = conv_param["filter_num"]
    if pool:
        H, W = conv_output_hw(H, W, 2, 2, 2, 0)
    if H < 1 or W < 1:
        raise ValueError(f"the input is too small for this architecture: reaches {H}x{W}")
    return C, H, W
