"""Chapter 6: random search for the learning rate and weight decay, on fastconv.sweep.

The book's ch06/hyperparameter_optimization.py: the first 500 training images, shuffled and
split 80/20 into training and validation data; 100 trials, each drawing weight decay
10**U(-8, -4) and learning rate 10**U(-6, -2) and training a 7-layer ReLU net
(784-100x6-10) with the Trainer (SGD, mini-batches of 100) for 50 epochs; the validation
accuracies are printed, and the 20 best trials plotted (validation solid, training dashed).

The trials run through fastconv.sweep, serially or on Dask workers; trial i's
hyperparameters and seed come from --seed and i alone, so every way of running gives the same
numbers. The ranking uses each trial's accuracy after its last step (``val_acc``).

    python examples/hyperparameter_optimization.py                 # 100 trials x 50 epochs
    python examples/hyperparameter_optimization.py --trials 20 --epochs 10
    python examples/hyperparameter_optimization.py --workers 2 --results ch06.jsonl
    python examples/hyperparameter_optimization.py --scheduler tcp://host:8786 --sampler tpe

Sweep options (see examples/_sweep_cli.py and docs/cluster.md): --trials, --workers N (0, the
default: serially in this process), --scheduler ADDRESS, --results FILE (resumes when it
exists, if its trials ran with the same --epochs, --train-size, --dtype, --fast and
--backend), --sampler random|grid|tpe, --checkpoint-dir DIR. --seed is the base seed (default
0). --test-size is refused: the validation images come from the training images.
"""
import argparse
import functools
import inspect
import math

import _common as common  # first: selects matplotlib's Agg backend
import _sweep_cli
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np

import fastconv
from fastconv.multi_layer_net import MultiLayerNet
from fastconv.sweep import LogUniform
from fastconv.trainer import Trainer
from fastconv.util import shuffle_dataset

VALIDATION_RATE = 0.20
GRAPH_DRAW_NUM = 20
COL_NUM = 5
SPACE = {"weight_decay": LogUniform(1e-8, 1e-4), "lr": LogUniform(1e-6, 1e-2)}  # the book's


def train_trial(hyperparameters, seed, checkpoint=None, *, data, epochs, dtype, settings):
    """Train one net quietly; its final accuracies, its per-epoch curves and ``settings``
    (the options that shaped it, which a resumed sweep checks)."""
    x_train, t_train, x_val, t_val = data
    np.random.seed(seed)  # the initial weights
    network = MultiLayerNet(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100],
                            output_size=10, weight_decay_lambda=hyperparameters["weight_decay"],
                            dtype=dtype)
    resume = {}
    if checkpoint is not None and "checkpoint" in inspect.signature(Trainer).parameters:
        resume = {"checkpoint": checkpoint}  # a Trainer that checkpoints: resume from it
    trainer = Trainer(network, x_train, t_train, x_val, t_val,
                      epochs=epochs, mini_batch_size=100, optimizer='sgd',
                      optimizer_param={'lr': hyperparameters["lr"]}, verbose=False, seed=seed,
                      **resume)
    trainer.train()
    return {"val_acc": trainer.final_test_acc,
            "train_acc": network.accuracy(x_train, t_train),
            "val_acc_list": trainer.test_acc_list, "train_acc_list": trainer.train_acc_list,
            "settings": settings}


def main(argv=None):
    parser = common.make_parser(__doc__)
    _sweep_cli.add_sweep_options(parser, common.positive_int)
    for action in parser._actions:
        if action.dest == "test_size":  # the book's script uses no test images
            action.help = argparse.SUPPRESS
    args = common.parse_args(parser, defaults={"epochs": 50, "train_size": 500, "trials": 100,
                                               "seed": 0},
                             quick={"epochs": 2, "trials": 3}, argv=argv,
                             outputs=["hyperparameter_optimization.png"])
    if args.test_size is not None:
        parser.error("--test-size: this script uses no test images (its validation images "
                     "come from the training images); leave it out")

    (x_train, t_train), _ = common.load_data(args, normalize=True)
    validation_num = int(x_train.shape[0] * VALIDATION_RATE)
    x_train, t_train = shuffle_dataset(x_train, t_train)
    data = (x_train[validation_num:], t_train[validation_num:],
            x_train[:validation_num], t_train[:validation_num])
    print(f"{len(data[0])} training and {validation_num} validation images; MultiLayerNet "
          f"784-100x6-10, SGD, batch 100, {common.count(args.trials, 'trial')} x "
          f"{common.count(args.epochs, 'epoch')}")

    # what shapes a trial besides its hyperparameters and seed: a file run with others is refused
    settings = {"--epochs": args.epochs, "--train-size": args.train_size,
                "--dtype": None if args.dtype is None else str(args.dtype),
                "--fast": fastconv.get_mode() == "fast", "--backend": args.backend}
    train = functools.partial(train_trial, data=data, epochs=args.epochs, dtype=args.dtype,
                              settings=settings)
    records, seconds, fresh = _sweep_cli.run(args, train, SPACE, settings=settings)
    ran = len(fresh)
    clock = common.Clock()  # the sweep's wall time, Dask and the evaluations included
    steps = args.epochs * common.iters_per_epoch(len(data[0]), 100)
    clock.add_steady(seconds, ran * steps * 100)
    for r in records:
        key = f"lr:{r['lr']:.3e}, weight decay:{r['weight_decay']:.3e}"
        outcome = f"error: {r['error']}" if "error" in r else f"val acc:{r['val_acc']:.4f}"
        print(f"trial {r['trial'] + 1}/{args.trials}: {outcome} | {key}")
    print(f"{common.count(ran, 'trial')} run in {seconds:.1f} s "
          f"({60 * ran / seconds:.1f} trials/min)")

    print("=========== Hyper-Parameter Optimization Result ===========")
    ranked = sorted((r for r in records if "error" not in r), key=lambda r: r["val_acc"],
                    reverse=True)
    shown = ranked[:GRAPH_DRAW_NUM]
    cols = max(min(COL_NUM, len(shown)), 1)
    rows = max(math.ceil(len(shown) / cols), 1)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.6 * rows), squeeze=False,
                             sharey=True, layout="constrained")
    marker = "o" if args.epochs < 4 else None  # a short run's points stay visible
    shown_values = []
    for i, r in enumerate(shown):
        print(f"Best-{i + 1} (val acc:{r['val_acc']:.4f}) | lr:{r['lr']:.3e}, "
              f"weight decay:{r['weight_decay']:.3e}")
        ax = axes.flat[i]
        ax.set_title(f"Best-{i + 1}: val {r['val_acc']:.3f}\nlr {r['lr']:.1e}, "
                     f"weight decay {r['weight_decay']:.1e}", fontsize=8)
        x = np.arange(len(r["val_acc_list"]))
        ax.plot(x, r["val_acc_list"], marker=marker, label="validation accuracy")
        ax.plot(x, r["train_acc_list"], "--", marker=marker, label="training accuracy")
        shown_values += list(r["val_acc_list"]) + list(r["train_acc_list"])
        ax.grid(True, alpha=0.3)
        if i % cols == 0:
            ax.set_ylabel("accuracy")
        if i + cols >= len(shown):  # the lowest panel of its column
            ax.set_xlabel("epochs")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    if shown_values:
        axes.flat[0].set_ylim(*common.fitted_range(shown_values))
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    fig.suptitle(f"ch06 random search: the {len(shown)} best of "
                 f"{common.count(args.trials, 'trial')} by final validation accuracy\n"
                 f"MultiLayerNet 784-100x6-10, SGD, batch 100, "
                 f"{common.count(args.epochs, 'epoch')}, {common.count(len(data[0]), 'image')}; "
                 "solid: validation, dashed: training")
    if shown:
        common.legend_below(fig, axes.flat[0].get_legend_handles_labels(), ncol=2)
    common.save_figure(fig, args, "hyperparameter_optimization.png")
    clock.report()


if __name__ == "__main__":
    main()
