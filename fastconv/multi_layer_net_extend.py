from fastconv.nets.multi_layer_net_extend import MultiLayerNetExtend  # noqa: F401  (the book's module name)
