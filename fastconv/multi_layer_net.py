from fastconv.nets.multi_layer_net import MultiLayerNet  # noqa: F401  (the book's module name)
