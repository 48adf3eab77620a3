from fastconv.nets.simple_convnet import SimpleConvNet  # noqa: F401  (the book's module name)
