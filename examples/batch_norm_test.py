"""Chapter 6: training with and without Batch Normalization across weight scales, timed.

The book's ch06/batch_norm_test.py: the first 1000 training images; for each of 16 initial
weight scales (np.logspace(0, -4, 16)) two 6-layer ReLU nets (784-100x5-10), one with
BatchNormalization after every hidden Affine, trained side by side by one SGD (lr 0.01) on
the same mini-batches of 100 for 20 epochs; the training accuracy of both is printed and
plotted at every epoch (one panel per weight scale).

    python examples/batch_norm_test.py              # the book's 16 scales x 20 epochs
    python examples/batch_norm_test.py --scales 4   # np.logspace(0, -4, 4)
"""
import math

import _common as common  # first: selects matplotlib's Agg backend
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from fastconv.multi_layer_net_extend import MultiLayerNetExtend
from fastconv.optimizer import SGD

BATCH_SIZE = 100
LEARNING_RATE = 0.01
HIDDEN = [100, 100, 100, 100, 100]


def train_pair(weight_init_std, x_train, t_train, max_epochs, args, clock):
    """Train a BatchNorm net and a plain net side by side; their per-epoch train accuracy."""
    bn_network = MultiLayerNetExtend(input_size=784, hidden_size_list=HIDDEN, output_size=10,
                                     weight_init_std=weight_init_std, use_batchnorm=True,
                                     dtype=args.dtype)
    network = MultiLayerNetExtend(input_size=784, hidden_size_list=HIDDEN, output_size=10,
                                  weight_init_std=weight_init_std, dtype=args.dtype)
    optimizer = SGD(lr=LEARNING_RATE)
    train_size = x_train.shape[0]
    iter_per_epoch = common.iters_per_epoch(train_size, BATCH_SIZE)

    train_acc_list, bn_train_acc_list = [], []
    i = 0
    # As in the book: accuracy after the first step of each epoch, max_epochs times.
    while len(train_acc_list) < max_epochs:
        batch_mask = np.random.choice(train_size, BATCH_SIZE)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        for net in (bn_network, network):
            with clock.step(BATCH_SIZE):
                grads = net.gradient(x_batch, t_batch)
                optimizer.update(net.params, grads)

        if i % iter_per_epoch == 0:
            train_acc = network.accuracy(x_train, t_train)
            bn_train_acc = bn_network.accuracy(x_train, t_train)
            train_acc_list.append(train_acc)
            bn_train_acc_list.append(bn_train_acc)
            print(f"epoch:{len(train_acc_list) - 1} | {train_acc:.4f} - {bn_train_acc:.4f} "
                  f"| {clock.lap_text()} for 2 networks")
        i += 1
    return train_acc_list, bn_train_acc_list


def main(argv=None):
    parser = common.make_parser(__doc__)
    parser.add_argument("--scales", type=common.positive_int, default=None,
                        help="number of weight scales in np.logspace(0, -4, N)")
    args = common.parse_args(parser, defaults={"epochs": 20, "train_size": 1000, "scales": 16},
                             quick={"epochs": 2, "train_size": 300, "scales": 2}, argv=argv,
                             outputs=["batch_norm_test.png"])

    (x_train, t_train), _ = common.load_data(args, normalize=True)
    weight_scale_list = np.logspace(0, -4, num=args.scales)
    print(f"MultiLayerNetExtend 784-100x5-10 with and without BatchNorm, SGD lr {LEARNING_RATE}, "
          f"batch {BATCH_SIZE}, {common.count(args.epochs, 'epoch')} x "
          f"{common.count(args.scales, 'weight scale')}")

    clock = common.Clock(warmup_steps=2)
    cols = min(4, args.scales)
    rows = math.ceil(args.scales / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False,
                             sharey=True, layout="constrained")
    marker = "o" if args.epochs < 4 else None  # a short run's points stay visible
    x = np.arange(args.epochs)
    for idx, w in enumerate(weight_scale_list):
        print(f"============== {idx + 1}/{args.scales} (weight scale {w:.3g}) ==============")
        # At the largest scales the net without BatchNorm overflows to inf/nan: that is the
        # point of the experiment (its accuracy drops to chance), so NumPy's warnings are muted.
        with np.errstate(over="ignore", invalid="ignore"):
            train_acc_list, bn_train_acc_list = train_pair(w, x_train, t_train, args.epochs,
                                                           args, clock)
        ax = axes.flat[idx]
        ax.set_title(f"initial weight std {w:.3g}", fontsize=9)
        ax.plot(x, bn_train_acc_list, marker=marker, label="with Batch Normalization")
        ax.plot(x, train_acc_list, marker=marker, linestyle="--",
                label="without (plain MultiLayerNetExtend)")
        ax.set_ylim(-0.03, 1.03)  # accuracies span 0.1 to 1 across the panels: one scale
        ax.grid(True, alpha=0.3)
        if idx % cols == 0:
            ax.set_ylabel("train accuracy")
        if idx + cols >= args.scales:  # the lowest panel of its column
            ax.set_xlabel("epochs")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for ax in axes.flat[args.scales:]:
        ax.set_visible(False)
    fig.suptitle(f"ch06 Batch Normalization: training accuracy by initial weight scale\n"
                 f"MultiLayerNetExtend 784-100x5-10, SGD lr {LEARNING_RATE}, batch {BATCH_SIZE}, "
                 f"{common.count(len(x_train), 'training image')}")
    common.legend_below(fig, axes.flat[0].get_legend_handles_labels(), ncol=2)
    common.save_figure(fig, args, "batch_norm_test.png")
    clock.report()


if __name__ == "__main__":
    main()
