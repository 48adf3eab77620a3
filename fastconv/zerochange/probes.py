"""Probe scenarios: small runs of the book's API that the user's object and fastconv's both go
through, under the same random state, so that their results can be compared.

A scenario takes the object under test (a function or a class) and returns the list of what
it observed: results, and ``State`` snapshots of instances. Inputs are built inside the
scenario from a private generator, so each side gets fresh copies it may modify. Sizes are
tiny: every scenario runs in milliseconds once fastconv's kernels are compiled.
"""
import copy

import numpy as np


class State:
    """An instance whose public attributes are compared: the user's names, read on both."""

    def __init__(self, instance):
        self.instance = instance


def _data(seed=7):
    return np.random.RandomState(seed)


def _x(*shape, seed=7):
    return _data(seed).randn(*shape)


def _labels(n, classes, seed=8):
    return _data(seed).randint(0, classes, size=n)


def _one_hot(labels, classes):
    rows = np.zeros((labels.size, classes))
    rows[np.arange(labels.size), labels] = 1.0
    return rows


def _softmax_rows(n, k, seed=9):
    e = np.exp(_x(n, k, seed=seed))
    return e / e.sum(axis=1, keepdims=True)


# ---- functions --------------------------------------------------------------------------

def _calls(*argument_makers):
    """A scenario calling the function once per argument list (each made fresh)."""
    def scenario(function):
        return [function(*make()) for make in argument_makers]
    return scenario


_ONE_ARRAY = _calls(lambda: (_x(3, 4),), lambda: (_x(5),))


def _loss_pairs():
    y, t = _softmax_rows(4, 3), _labels(4, 3)
    return [lambda: (y.copy(), _one_hot(t, 3)), lambda: (y.copy(), t.copy()),
            lambda: (y[0].copy(), _one_hot(t, 3)[0]),
            lambda: (y[:1].copy(), t[:1].reshape(1, 1))]  # (N, 1) labels, as ch07 uses


def _numerical_gradient_scenario(function):
    weights = _x(2, 3, seed=11)
    return [function(lambda w: np.sum(weights * w ** 2), _x(2, 3)),
            function(lambda w: np.sum(np.sin(w)), _x(4))]


def _numerical_gradient_2d_scenario(function):
    return [function(lambda w: np.sum(w ** 2), _x(3, 2)), function(lambda w: np.sum(w ** 3), _x(4))]


# ---- layers -----------------------------------------------------------------------------

def _layer_run(layer, x, *forward_extra, dout=None):
    out = layer.forward(x, *forward_extra)
    dx = layer.backward(_x(*np.shape(out), seed=12) if dout is None else dout)
    return [out, dx, State(layer)]


def _relu_like(cls):
    return _layer_run(cls(), _x(3, 4)) + _layer_run(cls(), _x(2, 2, 3, 3))


def _affine(cls):
    flat = _layer_run(cls(_x(4, 3, seed=1), _x(3, seed=2)), _x(2, 4))
    images = _layer_run(cls(_x(12, 3, seed=1), _x(3, seed=2)), _x(2, 3, 2, 2))
    return flat + images


def _softmax_with_loss(cls):
    seen = []
    for t in (_labels(4, 3), _one_hot(_labels(4, 3), 3)):
        layer = cls()
        seen += [layer.forward(_x(4, 3), t), layer.backward(), State(layer)]
    layer = cls()
    seen += [layer.forward(_x(1, 3), np.array([[2]])), layer.backward()]
    return seen


def _dropout(cls):
    layer = cls(0.3)
    seen = _layer_run(layer, _x(3, 5), True)
    return seen + [layer.forward(_x(3, 5), False), State(cls())]


def _batch_norm(cls):
    seen = []
    for shape in ((4, 3), (2, 3, 2, 2)):
        width = int(np.prod(shape[1:]))
        layer = cls(1.0 + 0.1 * _x(width, seed=3), 0.1 * _x(width, seed=4))
        seen += _layer_run(layer, _x(*shape), True)
        seen += [layer.forward(_x(*shape, seed=5), False), State(layer)]
    return seen


def _convolution(cls):
    seen = _layer_run(cls(_x(2, 3, 3, 3, seed=1), _x(2, seed=2), stride=1, pad=1), _x(2, 3, 4, 4))
    seen += _layer_run(cls(_x(2, 1, 2, 2, seed=1), _x(2, seed=2), 2, 0), _x(1, 1, 4, 4))
    seen += _layer_run(cls(_x(1, 1, 3, 3, seed=1), 0), _x(1, 1, 5, 5))  # ch07's scalar bias
    return seen


def _pooling(cls):
    return (_layer_run(cls(2, 2, stride=2), _x(2, 3, 4, 4))
            + _layer_run(cls(pool_h=3, pool_w=3, stride=1), _x(1, 2, 5, 5)))


# ---- optimizers -------------------------------------------------------------------------

def _optimizer(cls):
    seen = []
    for make in (lambda: cls(), lambda: cls(lr=0.05)):
        optimizer = make()
        params = {"W": _x(3, 2, seed=1), "b": _x(2, seed=2)}
        for step in range(3):
            grads = {"W": _x(3, 2, seed=20 + step), "b": _x(2, seed=30 + step)}
            optimizer.update(params, grads)
        seen += [params, State(optimizer)]
    optimizer = cls(lr=0.1)  # plain Python floats, as ch06/optimizer_compare_naive.py has them
    params = {"x": -7.0, "y": 2.0}
    for _ in range(3):
        optimizer.update(params, {"x": params["x"] / 10.0, "y": 2.0 * params["y"]})
    return seen + [params]


# ---- networks ---------------------------------------------------------------------------

def _net_run(net, x, t, numerical=True, accuracy_batch=None):
    # The conv nets' accuracy(x, t, batch_size) is given a batch that divides N: the book
    # drops a last partial batch, fastconv counts it (a documented correction).
    accuracy = (net.accuracy(x, t) if accuracy_batch is None
                else net.accuracy(x, t, batch_size=accuracy_batch))
    seen = [State(net), net.predict(x), net.loss(x, t), accuracy]
    grads = net.gradient(x, t)
    seen.append({key: grads[key] for key in sorted(grads)})
    if numerical:
        grads = net.numerical_gradient(x, t)
        seen.append({key: grads[key] for key in sorted(grads)})
    return seen + [State(net)]


def _two_layer_net(cls):
    t = _one_hot(_labels(3, 2), 2)  # ch04's net takes one-hot labels only
    seen = _net_run(cls(4, 3, 2, weight_init_std=0.5), _x(3, 4), t)
    return seen + _net_run(cls(input_size=4, hidden_size=5, output_size=2), _x(3, 4), t)


def _multi_layer_net(cls):
    t = _labels(3, 2)
    seen = _net_run(cls(4, [3, 3], 2), _x(3, 4), t)
    return seen + _net_run(cls(input_size=4, hidden_size_list=[3], output_size=2,
                               activation="sigmoid", weight_init_std=0.1,
                               weight_decay_lambda=0.1), _x(3, 4), _one_hot(t, 2))


def _multi_layer_net_extend(cls):
    t = _labels(4, 2)
    seen = _net_run(cls(4, [3, 3], 2, use_batchnorm=True), _x(4, 4), t)
    net = cls(4, [3], 2, activation="sigmoid", weight_decay_lambda=0.1, use_dropout=True,
              dropout_ration=0.3, use_batchnorm=True)
    seen += [net.predict(_x(4, 4), train_flg=True), net.loss(_x(4, 4), t, train_flg=True)]
    return seen + _net_run(net, _x(4, 4), _one_hot(t, 2), numerical=False)


def _simple_convnet(cls):
    conv = {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1}
    net = cls(input_dim=(1, 6, 6), conv_param=conv, hidden_size=4, output_size=3,
              weight_init_std=0.1)
    seen = _net_run(net, _x(2, 1, 6, 6), _labels(2, 3), numerical=False, accuracy_batch=1)
    return seen + [net.loss(_x(1, 1, 6, 6), np.array([[1]]))]  # ch07's (N, 1) labels


def _deep_convnet(cls):
    return _net_run(cls(), _x(2, 1, 28, 28), _labels(2, 10), numerical=False, accuracy_batch=2)


# ---- trainer and util -------------------------------------------------------------------

_TRAINER_NET = None


def _trainer(cls):
    from fastconv.nets.multi_layer_net import MultiLayerNet
    global _TRAINER_NET
    if _TRAINER_NET is None:
        # built once and copied into each run; its draws must not move np.random, or the
        # side that builds it (the first to run) samples other mini-batches than the second
        state = np.random.get_state()
        _TRAINER_NET = MultiLayerNet(4, [5], 3, dtype=np.float64)
        np.random.set_state(state)
    x, t = _x(12, 4), _labels(12, 3)
    trainer = cls(copy.deepcopy(_TRAINER_NET), x[:8], t[:8], x[8:], t[8:], epochs=2,
                  mini_batch_size=4, optimizer="Adam", optimizer_param={"lr": 0.01},
                  evaluate_sample_num_per_epoch=4, verbose=False)
    trainer.train()
    return [trainer.train_loss_list, trainer.train_acc_list, trainer.test_acc_list,
            trainer.network.params, State(trainer)]


def _im2col(function):
    return [function(_x(2, 3, 4, 4), 3, 3, 1, 1), function(_x(1, 2, 5, 5), 2, 2, stride=2)]


def _col2im(function):
    return [function(_x(32, 27), (2, 3, 4, 4), 3, 3, 1, 1), function(_x(4, 8), (1, 2, 5, 5), 2, 2, 2)]


SCENARIOS = {
    "fastconv.functions": {
        "identity_function": _ONE_ARRAY, "step_function": _ONE_ARRAY, "sigmoid": _ONE_ARRAY,
        "sigmoid_grad": _ONE_ARRAY, "relu": _ONE_ARRAY, "relu_grad": _ONE_ARRAY,
        "softmax": _ONE_ARRAY, "sum_squared_error": _calls(*_loss_pairs()[:1]),
        "cross_entropy_error": _calls(*_loss_pairs()),
        "softmax_loss": _calls(lambda: (_x(4, 3), _labels(4, 3))),
    },
    "fastconv.gradient": {
        "numerical_gradient": _numerical_gradient_scenario,
        "numerical_gradient_2d": _numerical_gradient_2d_scenario,
        "_numerical_gradient_1d": _calls(lambda: (lambda w: np.sum(w ** 2), _x(4))),
    },
    "fastconv.util": {
        "smooth_curve": _calls(lambda: (np.abs(_x(40)),)),
        "shuffle_dataset": _calls(lambda: (_x(6, 2), _labels(6, 3)),
                                  lambda: (_x(5, 1, 2, 2), _labels(5, 3))),
        "conv_output_size": _calls(lambda: (28, 5, 1, 0), lambda: (7, 3, 2, 1)),
        "im2col": _im2col, "col2im": _col2im,
    },
    "fastconv.layers": {
        "Relu": _relu_like, "Sigmoid": _relu_like, "Affine": _affine,
        "SoftmaxWithLoss": _softmax_with_loss, "Dropout": _dropout,
        "BatchNormalization": _batch_norm, "Convolution": _convolution, "Pooling": _pooling,
    },
    "fastconv.optimizer": {name: _optimizer for name in
                           ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")},
    "fastconv.trainer": {"Trainer": _trainer},
    "fastconv.two_layer_net": {"TwoLayerNet": _two_layer_net},
    "fastconv.nets.two_layer_net_ch04": {"TwoLayerNet": _two_layer_net},
    "fastconv.multi_layer_net": {"MultiLayerNet": _multi_layer_net},
    "fastconv.multi_layer_net_extend": {"MultiLayerNetExtend": _multi_layer_net_extend},
    "fastconv.simple_convnet": {"SimpleConvNet": _simple_convnet},
    "fastconv.deep_convnet": {"DeepConvNet": _deep_convnet},
}
