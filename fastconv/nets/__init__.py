"""The book's networks, on fastconv layers: ``from fastconv.nets import SimpleConvNet``.

Each is also importable under the book's module name, e.g.
``from fastconv.simple_convnet import SimpleConvNet``.
"""
from fastconv.nets.two_layer_net import TwoLayerNet
from fastconv.nets.multi_layer_net import MultiLayerNet
from fastconv.nets.multi_layer_net_extend import MultiLayerNetExtend
from fastconv.nets.simple_convnet import SimpleConvNet
from fastconv.nets.deep_convnet import DeepConvNet

__all__ = ["TwoLayerNet", "MultiLayerNet", "MultiLayerNetExtend", "SimpleConvNet",
           "DeepConvNet"]
