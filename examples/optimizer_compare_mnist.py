"""Chapter 6: SGD, Momentum, AdaGrad and Adam on MNIST, timed.

The book's ch06/optimizer_compare_mnist.py: four identical 5-layer nets (784-100-100-100-100-10,
ReLU, He init), one per optimizer with its default hyperparameters, trained on the same
mini-batches of 128 for 2000 iterations; the losses are printed every 100 iterations and
plotted smoothed. ``--rmsprop`` adds RMSprop (commented out in the book) and ``--nesterov``
adds Nesterov.

The loss curves record each step's own forward pass (``last_loss``, before the update),
not a second forward pass after it as in the book.

    python examples/optimizer_compare_mnist.py             # the book's 2000 iterations
    python examples/optimizer_compare_mnist.py --epochs 1  # 469 iterations
"""
import _common as common  # first: selects matplotlib's Agg backend

from fastconv.multi_layer_net import MultiLayerNet
from fastconv.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

BATCH_SIZE = 128
MARKERS = {"SGD": "o", "Momentum": "x", "AdaGrad": "s", "Adam": "D", "RMSprop": "^",
           "Nesterov": "v"}


def main(argv=None):
    parser = common.make_parser(__doc__, iters=True)
    parser.add_argument("--rmsprop", action="store_true", help="also train with RMSprop")
    parser.add_argument("--nesterov", action="store_true", help="also train with Nesterov")
    args = common.parse_args(parser, defaults={"iters": 2000}, quick={"iters": 20}, argv=argv,
                             outputs=["optimizer_compare_mnist.png"])

    (x_train, t_train), _ = common.load_data(args, normalize=True)
    max_iterations = common.iterations(args, x_train.shape[0], BATCH_SIZE)

    optimizers = {"SGD": SGD(), "Momentum": Momentum(), "AdaGrad": AdaGrad(), "Adam": Adam()}
    if args.rmsprop:
        optimizers["RMSprop"] = RMSprop()
    if args.nesterov:
        optimizers["Nesterov"] = Nesterov()
    networks = {name: MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100],
                                    output_size=10, dtype=args.dtype)
                for name in optimizers}
    print(f"MultiLayerNet 784-100x4-10 per optimizer ({', '.join(optimizers)}), "
          f"batch {BATCH_SIZE}, {common.count(max_iterations, 'iteration')}")

    clock = common.Clock(warmup_steps=len(networks))
    losses = common.train_side_by_side(networks, optimizers, x_train, t_train,
                                       max_iterations, BATCH_SIZE, clock)
    common.plot_losses(args, losses, MARKERS,
                       f"ch06 optimizers on MNIST: MultiLayerNet 784-100x4-10, batch {BATCH_SIZE}, "
                       "default hyperparameters", "optimizer_compare_mnist.png")
    clock.report()


if __name__ == "__main__":
    main()
