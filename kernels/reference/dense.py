"""The gradient of a ReLU network's softmax cross-entropy loss in plain NumPy: the oracle for
``fastconv.kernels.jit.dense``, the book's layers' statements one after another."""
import numpy as np

__all__ = ["dense_relu_gradient"]


def dense_relu_gradient(x, labels, rows, weights, biases, activations, masks, y, row_loss,
                        dW, db):
    """See ``fastconv.kernels.jit.dense.dense_relu_gradient``: the same arguments, written
    the same way."""
    L = len(weights)
    layer_input = x
    for l in range(L):
        out = layer_input @ weights[l] + biases[l]
        if l < L - 1:
            masks[l][...] = out <= 0
            activations[l][...] = np.where(masks[l], 0, out)
            layer_input = activations[l]
    shifted = out - out.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    y[...] = e / e.sum(axis=1, keepdims=True)
    n = x.shape[0]
    row_loss[...] = np.log(y[np.arange(n), labels] + x.dtype.type(1e-7))
    if rows is None:
        dout = y.copy()
        dout[np.arange(n), labels] -= 1
        dout /= y.dtype.type(n)
    else:
        dout = (y - rows) / y.dtype.type(n)
    for l in range(L - 1, -1, -1):
        layer_input = x if l == 0 else activations[l - 1]
        db[l][...] = dout.sum(axis=0)
        dW[l][...] = layer_input.T @ dout
        if l > 0:
            dout = dout @ weights[l].T
            dout[masks[l - 1]] = 0
