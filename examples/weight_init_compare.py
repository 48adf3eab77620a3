"""Chapter 6: weight initialisation (std 0.01, Xavier, He) on MNIST, timed.

The book's ch06/weight_init_compare.py: three 5-layer ReLU nets (784-100-100-100-100-10)
initialised with a Gaussian of std 0.01, Xavier's scale and He's scale, trained by one SGD
(lr 0.01) on the same mini-batches of 128 for 2000 iterations; the losses are printed every
100 iterations and plotted smoothed.

The loss curves record each step's own forward pass (``last_loss``, before the update),
not a second forward pass after it as in the book.

    python examples/weight_init_compare.py             # the book's 2000 iterations
    python examples/weight_init_compare.py --iters 500
"""
import _common as common  # first: selects matplotlib's Agg backend

from fastconv.multi_layer_net import MultiLayerNet
from fastconv.optimizer import SGD

BATCH_SIZE = 128
WEIGHT_INIT_TYPES = {"std=0.01": 0.01, "Xavier": "sigmoid", "He": "relu"}
MARKERS = {"std=0.01": "o", "Xavier": "s", "He": "D"}


def main(argv=None):
    parser = common.make_parser(__doc__, iters=True)
    args = common.parse_args(parser, defaults={"iters": 2000}, quick={"iters": 20}, argv=argv,
                             outputs=["weight_init_compare.png"])

    (x_train, t_train), _ = common.load_data(args, normalize=True)
    max_iterations = common.iterations(args, x_train.shape[0], BATCH_SIZE)

    optimizer = SGD(lr=0.01)  # one optimizer for all three, as in the book (SGD keeps no state)
    networks = {name: MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100],
                                    output_size=10, weight_init_std=init, dtype=args.dtype)
                for name, init in WEIGHT_INIT_TYPES.items()}
    print(f"MultiLayerNet 784-100x4-10 per init ({', '.join(networks)}), SGD lr 0.01, "
          f"batch {BATCH_SIZE}, {common.count(max_iterations, 'iteration')}")

    clock = common.Clock(warmup_steps=len(networks))
    losses = common.train_side_by_side(networks, dict.fromkeys(networks, optimizer),
                                       x_train, t_train, max_iterations, BATCH_SIZE, clock)
    common.plot_losses(args, losses, MARKERS,
                       "ch06 weight initialisation on MNIST: MultiLayerNet 784-100x4-10, "
                       f"SGD lr 0.01, batch {BATCH_SIZE}", "weight_init_compare.png")
    clock.report()


if __name__ == "__main__":
    main()
