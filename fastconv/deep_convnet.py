from fastconv.nets.deep_convnet import DeepConvNet  # noqa: F401  (the book's module name)
