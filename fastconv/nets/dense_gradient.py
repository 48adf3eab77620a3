"""``Network.gradient`` of a ReLU network in one compiled call, where the layers allow it.

A network whose layers are ``Affine`` (``Relu``, ``Affine``)+ with ``SoftmaxWithLoss`` last (the
book's ``TwoLayerNet``, ``MultiLayerNet`` with ReLU) computes its gradient with the jit
backend's ``dense_relu_gradient``: the kernels the layers would call, in their order, with
no Python between them, so the same bits in either dtype. Every layer is then left as its
own forward and backward passes leave it (inputs, masks, gradients, softmax output).

Anything else runs layer by layer: another backend (the NumPy backend is the book's code,
and the baseline of the benchmarks), a subclass of a layer or of the loss, a network that
overrides how it predicts or computes its loss, operands a layer would convert, a layer
told not to compute its input gradient.
"""
import numpy as np

from fastconv import backend as _backend
from fastconv._validate import network_input
from fastconv.layers import Affine, Relu, SoftmaxWithLoss
from fastconv.layers.loss import target_labels

__all__ = ["fused_gradient"]

# the methods of Network that gradient() runs on the layer path; a subclass or an instance
# that replaces one of them gets it run
_OWN_METHODS = ("predict", "_predict", "_loss", "_training_loss")


def _relu_stack(net):
    """(affine layers, relu layers) of a network this path covers, else None."""
    layers = net._layer_list()
    if len(layers) < 3 or len(layers) % 2 == 0 or type(net.last_layer) is not SoftmaxWithLoss:
        return None
    affines, relus = layers[0::2], layers[1::2]
    if any(type(a) is not Affine for a in affines) or any(type(r) is not Relu for r in relus):
        return None
    if not all(a.need_input_grad for a in affines[1:]):
        return None
    return affines, relus


def uses_network_methods(net, base, names=_OWN_METHODS):
    """Whether neither net's class nor net itself replaces base's methods of those names."""
    return all(getattr(type(net), name) is getattr(base, name) and name not in vars(net)
               for name in names)


def _operands(affines, x, dtype):
    """(weights, biases) as the kernel takes them, or None where a layer would convert them."""
    weights, biases = [], []
    shape = x.shape
    for affine in affines:
        W = affine.weights_for(shape, dtype)
        if W is None or not (W.flags.c_contiguous and affine.b.flags.c_contiguous):
            return None
        weights.append(W)
        biases.append(affine.b)
        shape = (shape[0], W.shape[1])
    return tuple(weights), tuple(biases)


def fused_gradient(net, base, x, t):
    """Runs net's forward and backward pass in one call and returns the loss (before any
    weight decay), leaving the layers as the layer-by-layer pass leaves them; None, with
    nothing changed, where that pass must run instead. base is the Network class."""
    if _backend.get_backend() != "numba" or not uses_network_methods(net, base):
        return None
    stack = _relu_stack(net)
    if stack is None:
        return None
    affines, relus = stack
    dtype = net.dtype
    x = network_input(x, dtype)  # as predict casts it
    if x.ndim < 2 or x.shape[0] == 0:
        return None
    operands = _operands(affines, x, dtype)
    if operands is None:
        return None
    weights, biases = operands
    N, K = x.shape[0], weights[-1].shape[1]
    t_array = np.asarray(t)
    # integer labels go as they are: the kernel checks their range before it writes
    # anything, and target_labels' min and max took 3 us a step
    labels_as_given = t_array.shape == (N,) and t_array.dtype.kind in "iu"
    labels = np.ascontiguousarray(t_array if labels_as_given
                                  else target_labels(t_array, (N, K)), dtype=np.intp)
    rows = None
    if t_array.shape == (N, K):
        rows = np.ascontiguousarray(t_array, dtype=dtype)
    x2 = np.ascontiguousarray(x.reshape(N, -1))
    activations = tuple(np.empty((N, W.shape[1]), dtype) for W in weights[:-1])
    masks = tuple(np.empty((N, W.shape[1]), np.bool_) for W in weights[:-1])
    y = np.empty((N, K), dtype)
    row_loss = np.empty(N, dtype)
    dW = tuple(np.empty(W.shape, dtype) for W in weights)
    db = tuple(np.empty(W.shape[1], dtype) for W in weights)
    try:
        _backend.kernels().dense_relu_gradient(x2, labels, rows, weights, biases, activations,
                                               masks, y, row_loss, dW, db)
    except ValueError:
        if labels_as_given:
            target_labels(t_array, (N, K))  # the layer path's error, naming t and its range
        raise
    loss = dtype.type(-row_loss.sum() / N)
    inputs = (x2,) + activations
    for l, affine in enumerate(affines):
        affine.keep_pass(x.shape if l == 0 else inputs[l].shape, inputs[l], dW[l], db[l])
    for relu, mask in zip(relus, masks):
        relu.keep_pass(mask)
    net.last_layer.keep_pass(t, t_array, labels, y, loss)
    return loss
