"""Chapter 6: overfitting 300 images, held back by weight decay, timed.

The book's ch06/overfit_weight_decay.py: the first 300 training images, a 7-layer ReLU net
(784-100x6-10) with weight decay lambda 0.1, SGD lr 0.01, mini-batches of 100, 201 epochs;
the training and test accuracy are printed and plotted at every epoch. ``--weight-decay 0``
shows the overfitting without it.

    python examples/overfit_weight_decay.py                    # the book's 201 epochs
    python examples/overfit_weight_decay.py --weight-decay 0   # no weight decay
"""
import _common as common  # first: selects matplotlib's Agg backend
import numpy as np

from fastconv.multi_layer_net import MultiLayerNet
from fastconv.optimizer import SGD

BATCH_SIZE = 100
LEARNING_RATE = 0.01


def main(argv=None):
    parser = common.make_parser(__doc__)
    parser.add_argument("--weight-decay", type=float, default=0.1,
                        help="weight decay lambda (default: 0.1, as in the book)")
    args = common.parse_args(parser, defaults={"epochs": 201, "train_size": 300},
                             quick={"epochs": 3}, argv=argv,
                             outputs=["overfit_weight_decay.png"])

    (x_train, t_train), (x_test, t_test) = common.load_data(args, normalize=True)
    train_size = x_train.shape[0]
    iter_per_epoch = common.iters_per_epoch(train_size, BATCH_SIZE)

    network = MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100],
                            output_size=10, weight_decay_lambda=args.weight_decay,
                            dtype=args.dtype)
    optimizer = SGD(lr=LEARNING_RATE)
    print(f"MultiLayerNet 784-100x6-10, weight decay {args.weight_decay}, SGD lr "
          f"{LEARNING_RATE}, batch {BATCH_SIZE}, {common.count(args.epochs, 'epoch')}")

    clock = common.Clock()
    train_acc_list, test_acc_list = [], []
    i = 0
    # As in the book: accuracy after the first step of each epoch, args.epochs times.
    while len(train_acc_list) < args.epochs:
        with clock.step(BATCH_SIZE):
            batch_mask = np.random.choice(train_size, BATCH_SIZE)
            grads = network.gradient(x_train[batch_mask], t_train[batch_mask])
            optimizer.update(network.params, grads)

        if i % iter_per_epoch == 0:
            train_acc = network.accuracy(x_train, t_train)
            test_acc = network.accuracy(x_test, t_test)
            train_acc_list.append(train_acc)
            test_acc_list.append(test_acc)
            print(f"epoch:{len(train_acc_list) - 1}, train acc:{train_acc:.4f}, "
                  f"test acc:{test_acc:.4f} | {clock.lap_text()}")
        i += 1

    common.plot_accuracy(args, {"train": train_acc_list, "test": test_acc_list},
                         f"ch06 overfitting {common.count(train_size, 'image')}: weight decay "
                         f"lambda {args.weight_decay}, SGD lr {LEARNING_RATE}, batch {BATCH_SIZE}",
                         "overfit_weight_decay.png")
    clock.report()


if __name__ == "__main__":
    main()
