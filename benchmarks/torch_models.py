"""The book's networks in ``torch.nn``, for ``benchmarks/compare.py`` (PyTorch on the CPU).

Same layers, sizes and float32 as fastconv's defaults; the weights keep PyTorch's default
initialisation (the speed does not depend on it). ``torch`` is imported only inside the
functions, so importing this module (as asv's discovery does) needs no PyTorch and costs
nothing. fastconv itself never imports this.
"""


def simple_convnet():
    """ch07 SimpleConvNet: conv 30x5x5 - relu - pool 2x2 - affine 100 - relu - affine 10."""
    from torch import nn
    return nn.Sequential(
        nn.Conv2d(1, 30, kernel_size=5, stride=1, padding=0), nn.ReLU(),
        nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(30 * 12 * 12, 100), nn.ReLU(),
        nn.Linear(100, 10),
    )


def deep_convnet():
    """ch08 DeepConvNet: six 3x3 convolutions in three pooled pairs, two affines, dropout."""
    from torch import nn
    layers = []
    channels = [(1, 16, 1), (16, 16, 1), (16, 32, 1), (32, 32, 2), (32, 64, 1), (64, 64, 1)]
    for idx, (c_in, c_out, pad) in enumerate(channels):
        layers += [nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=pad), nn.ReLU()]
        if idx % 2 == 1:
            layers.append(nn.MaxPool2d(2, 2))
    layers += [nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(), nn.Dropout(0.5),
               nn.Linear(50, 10), nn.Dropout(0.5)]
    return nn.Sequential(*layers)


def two_layer_net():
    """ch05 TwoLayerNet 784-50-10: affine - relu - affine."""
    from torch import nn
    return nn.Sequential(nn.Linear(784, 50), nn.ReLU(), nn.Linear(50, 10))


MODELS = {"SimpleConvNet": simple_convnet, "DeepConvNet": deep_convnet,
          "TwoLayerNet": two_layer_net}


class TrainStep:
    """One training step as the book's Trainer does it: zero_grad, forward, loss, backward, step.

    ``optimizer`` is ``"Adam"`` (lr 0.001, the book's default) or ``"SGD"`` (lr 0.01).
    """

    def __init__(self, name, optimizer, x, t):
        import torch
        self.torch = torch
        self.model = MODELS[name]()
        self.model.train()
        if optimizer == "Adam":
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.001)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.x = torch.from_numpy(x)
        self.t = torch.from_numpy(t).long()
        if name == "TwoLayerNet":
            self.x = self.x.reshape(len(self.x), -1)

    def run(self):
        self.optimizer.zero_grad()
        loss = self.torch.nn.functional.cross_entropy(self.model(self.x), self.t)
        loss.backward()
        self.optimizer.step()


def accuracy(model, x, t, batch_size=100):
    """Fraction of correct top-1 predictions over numpy arrays, in eval mode, without autograd."""
    import torch
    model.eval()
    correct = 0
    with torch.inference_mode():
        xs, ts = torch.from_numpy(x), torch.from_numpy(t).long()
        for start in range(0, len(xs), batch_size):
            y = model(xs[start:start + batch_size])
            correct += int((y.argmax(dim=1) == ts[start:start + batch_size]).sum())
    return correct / len(xs)
