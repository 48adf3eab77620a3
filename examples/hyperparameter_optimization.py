"""Chapter 6: random search for the learning rate and weight decay, timed.

The book's ch06/hyperparameter_optimization.py: the first 500 training images, shuffled and
split 80/20 into training and validation data; 100 trials, each drawing weight decay
10**U(-8, -4) and learning rate 10**U(-6, -2) and training a 7-layer ReLU net
(784-100x6-10) with the Trainer (SGD, mini-batches of 100) for 50 epochs; the validation
accuracies are printed, and the 20 best trials plotted (validation solid, training dashed).

    python examples/hyperparameter_optimization.py                 # 100 trials x 50 epochs
    python examples/hyperparameter_optimization.py --trials 20 --epochs 10
"""
import math

import _common as common  # first: selects matplotlib's Agg backend
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

from fastconv.multi_layer_net import MultiLayerNet
from fastconv.trainer import Trainer
from fastconv.util import shuffle_dataset

VALIDATION_RATE = 0.20
GRAPH_DRAW_NUM = 20
COL_NUM = 5


def train_trial(lr, weight_decay, data, args, seed):
    """Train one net quietly; its validation and training accuracy per epoch, and its Trainer."""
    x_train, t_train, x_val, t_val = data
    network = MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100],
                            output_size=10, weight_decay_lambda=weight_decay, dtype=args.dtype)
    trainer = Trainer(network, x_train, t_train, x_val, t_val,
                      epochs=args.epochs, mini_batch_size=100,
                      optimizer='sgd', optimizer_param={'lr': lr}, verbose=False, seed=seed)
    trainer.train()
    return trainer.test_acc_list, trainer.train_acc_list, trainer


def main(argv=None):
    parser = common.make_parser(__doc__)
    parser.add_argument("--trials", type=common.positive_int, default=None,
                        help="number of random trials")
    args = common.parse_args(parser, defaults={"epochs": 50, "train_size": 500, "trials": 100},
                             quick={"epochs": 2, "trials": 3}, argv=argv,
                             outputs=["hyperparameter_optimization.png"])

    (x_train, t_train), _ = common.load_data(args, normalize=True)
    validation_num = int(x_train.shape[0] * VALIDATION_RATE)
    x_train, t_train = shuffle_dataset(x_train, t_train)
    data = (x_train[validation_num:], t_train[validation_num:],
            x_train[:validation_num], t_train[:validation_num])
    print(f"{len(data[0])} training and {validation_num} validation images; MultiLayerNet "
          f"784-100x6-10, SGD, batch 100, {common.count(args.trials, 'trial')} x "
          f"{common.count(args.epochs, 'epoch')}")

    # The search draws from its own generator: a seeded Trainer reseeds np.random, which
    # would otherwise make every trial draw the same hyperparameters.
    search_rng = np.random.default_rng(args.seed)
    clock = common.Clock()
    results_val, results_train, settings = {}, {}, {}
    for trial in range(args.trials):
        weight_decay = 10 ** search_rng.uniform(-8, -4)
        lr = 10 ** search_rng.uniform(-6, -2)
        seed = None if args.seed is None else args.seed + trial
        val_acc_list, train_acc_list, trainer = train_trial(lr, weight_decay, data, args, seed)
        common.add_trainer_time(clock, trainer)
        key = f"lr:{lr:.3e}, weight decay:{weight_decay:.3e}"
        results_val[key] = val_acc_list
        results_train[key] = train_acc_list
        settings[key] = (lr, weight_decay)
        print(f"trial {trial + 1}/{args.trials}: val acc:{val_acc_list[-1]:.4f} | {key} "
              f"| {clock.lap_text()}")

    print("=========== Hyper-Parameter Optimization Result ===========")
    ranked = sorted(results_val.items(), key=lambda item: item[1][-1], reverse=True)
    shown = ranked[:GRAPH_DRAW_NUM]
    cols = min(COL_NUM, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), squeeze=False,
                             sharey=True, layout="constrained")
    marker = "o" if args.epochs < 4 else None  # a short run's points stay visible
    shown_values = []
    for i, (key, val_acc_list) in enumerate(shown):
        print(f"Best-{i + 1} (val acc:{val_acc_list[-1]:.4f}) | {key}")
        lr, weight_decay = settings[key]
        ax = axes.flat[i]
        ax.set_title(f"Best-{i + 1}: val {val_acc_list[-1]:.3f}\nlr {lr:.1e}, "
                     f"weight decay {weight_decay:.1e}", fontsize=8)
        x = np.arange(len(val_acc_list))
        ax.plot(x, val_acc_list, marker=marker, label="validation accuracy")
        ax.plot(x, results_train[key], "--", marker=marker, label="training accuracy")
        shown_values += list(val_acc_list) + list(results_train[key])
        ax.grid(True, alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
        if i + cols >= len(shown):  # the lowest panel of its column
            ax.set_xlabel("epochs")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.flat[0].set_ylim(*common.fitted_range(shown_values))
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    fig.suptitle(f"ch06 random search: the {len(shown)} best of "
                 f"{common.count(args.trials, 'trial')} by final validation accuracy\n"
                 f"MultiLayerNet 784-100x6-10, SGD, batch 100, "
                 f"{common.count(args.epochs, 'epoch')}, {common.count(len(data[0]), 'image')}; "
                 "solid: validation, dashed: training")
    common.legend_below(fig, axes.flat[0].get_legend_handles_labels(), ncol=2)
    common.save_figure(fig, args, "hyperparameter_optimization.png")
    clock.report()


if __name__ == "__main__":
    main()
