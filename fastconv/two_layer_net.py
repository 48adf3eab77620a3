from fastconv.nets.two_layer_net import TwoLayerNet  # noqa: F401  (the book's module name)
