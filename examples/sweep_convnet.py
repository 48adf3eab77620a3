"""Sweep SimpleConvNet's learning rate and batch size on MNIST or Fashion-MNIST.

For the case one machine is too slow: each trial is a full chapter-7 training (SimpleConvNet,
Adam), and the trials spread over Dask workers, locally or on a cluster. Trial i's learning
rate (log-uniform 1e-4 .. 1e-2) and batch size (50, 100 or 200) and its seed come from --seed
and i alone. Each trial loads the data itself, on its worker (from --data-dir, the shared
$FASTCONV_DATA or the download cache), so no images travel through the scheduler; it
validates on the last 10% of the training images and reports the test accuracy too. The
figure plots each trial's final validation accuracy against its learning rate.

    python examples/sweep_convnet.py --trials 12 --epochs 2 --workers 2 --results conv.jsonl
    python examples/sweep_convnet.py --dataset fashion-mnist --scheduler tcp://host:8786

Sweep options (examples/_sweep_cli.py, docs/cluster.md): --trials, --workers N (0, the
default: serially in this process), --scheduler ADDRESS, --results FILE (resumes when it
exists), --sampler random|grid|tpe, --checkpoint-dir DIR. --seed is the base seed (default 0).
"""
import functools
import inspect

import _common as common  # first: selects matplotlib's Agg backend
import _sweep_cli
import matplotlib.pyplot as plt
import numpy as np

from fastconv.datasets import load_mnist
from fastconv.simple_convnet import SimpleConvNet
from fastconv.sweep import Choice, LogUniform
from fastconv.trainer import Trainer

SPACE = {"lr": LogUniform(1e-4, 1e-2), "batch_size": Choice([50, 100, 200])}
VALIDATION_RATE = 0.10


def train_trial(hyperparameters, seed, checkpoint=None, *, dataset, data_dir, train_size,
                test_size, epochs, dtype):
    """One SimpleConvNet training; its final validation, training and test accuracy."""
    (x_train, t_train), (x_test, t_test) = load_mnist(flatten=False, data_dir=data_dir,
                                                      dataset=dataset)
    x_train, t_train = x_train[:train_size], t_train[:train_size]
    x_test, t_test = x_test[:test_size], t_test[:test_size]
    validation_num = max(int(len(x_train) * VALIDATION_RATE), 1)
    x_val, t_val = x_train[-validation_num:], t_train[-validation_num:]
    x_train, t_train = x_train[:-validation_num], t_train[:-validation_num]

    np.random.seed(seed)  # the initial weights
    network = SimpleConvNet(dtype=dtype)
    resume = {}
    if checkpoint is not None and "checkpoint" in inspect.signature(Trainer).parameters:
        resume = {"checkpoint": checkpoint}  # a Trainer that checkpoints: resume from it
    trainer = Trainer(network, x_train, t_train, x_val, t_val, epochs=epochs,
                      mini_batch_size=hyperparameters["batch_size"], optimizer="Adam",
                      optimizer_param={"lr": hyperparameters["lr"]},
                      evaluate_sample_num_per_epoch=1000, verbose=False, seed=seed, **resume)
    trainer.train()
    return {"val_acc": trainer.final_test_acc,
            "train_acc": network.accuracy(x_train[:1000], t_train[:1000]),
            "test_acc": network.accuracy(x_test, t_test),
            "images": trainer.max_iter * trainer.batch_size}


def main(argv=None):
    parser = common.make_parser(__doc__)
    parser.add_argument("--dataset", choices=("mnist", "fashion-mnist"), default="mnist",
                        help="which dataset (default: mnist)")
    _sweep_cli.add_sweep_options(parser, common.positive_int)
    args = common.parse_args(parser, defaults={"epochs": 5, "train_size": 60000,
                                               "test_size": 10000, "trials": 12, "seed": 0},
                             quick={"epochs": 1, "train_size": 500, "test_size": 200,
                                    "trials": 2}, argv=argv, outputs=["sweep_convnet.png"])
    print(f"SimpleConvNet on {args.dataset}: {args.train_size} training images (10% held out "
          f"for validation), {args.test_size} test images, Adam, "
          f"{common.count(args.trials, 'trial')} x {common.count(args.epochs, 'epoch')}")
    if args.scheduler is None:
        # the trials read this machine's files: missing data stops the sweep before it records
        # every trial as failed (a rerun would then skip them)
        common.find_data(args, dataset=args.dataset)
    train = functools.partial(train_trial, dataset=args.dataset, data_dir=args.data_dir,
                              train_size=args.train_size, test_size=args.test_size,
                              epochs=args.epochs, dtype=args.dtype)
    records, seconds, fresh = _sweep_cli.run(args, train, SPACE)
    ran = len(fresh)

    clock = common.Clock()  # the sweep's wall time, Dask, loading and evaluations included
    clock.add_steady(seconds, sum(r.get("images", 0) for r in fresh))  # run now, not loaded
    done = [r for r in records if "error" not in r]
    for r in records:
        outcome = (f"error: {r['error']}" if "error" in r else
                   f"val acc:{r['val_acc']:.4f}, test acc:{r['test_acc']:.4f}")
        print(f"trial {r['trial'] + 1}/{args.trials}: {outcome} | lr:{r['lr']:.3e}, "
              f"batch:{r['batch_size']}")
    print(f"{common.count(ran, 'trial')} run in {seconds:.1f} s "
          f"({60 * ran / seconds:.1f} trials/min)")
    if done:
        best = max(done, key=lambda r: r["val_acc"])
        print(f"Best: lr:{best['lr']:.3e}, batch:{best['batch_size']} -> val acc "
              f"{best['val_acc']:.4f}, test acc {best['test_acc']:.4f}")

    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    for batch_size, marker in zip(SPACE["batch_size"].values, "osD"):
        points = [r for r in done if r["batch_size"] == batch_size]
        if points:
            ax.plot([r["lr"] for r in points], [r["val_acc"] for r in points], marker,
                    markersize=8, label=f"batch {batch_size}")
    ax.set_xscale("log")
    low, high = SPACE["lr"].low, SPACE["lr"].high
    ax.set_xlim(low / 1.3, high * 1.3)  # the whole search range, to see where trials fell
    ax.set_xlabel(f"learning rate (drawn log-uniformly from {low:g} to {high:g})")
    ax.set_ylabel("final validation accuracy")
    values = [r["val_acc"] for r in done]
    if values:
        ax.set_ylim(*common.fitted_range(values))
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"SimpleConvNet on {args.dataset}, Adam: {common.count(len(done), 'trial')} "
                 f"of {common.count(args.epochs, 'epoch')}\n"
                 f"{common.count(args.train_size, 'training image')} (10% held out for "
                 "validation); the marker is the batch size")
    if done:
        common.legend_below(fig, ax.get_legend_handles_labels(), ncol=3)
    common.save_figure(fig, args, "sweep_convnet.png")
    clock.report()


if __name__ == "__main__":
    main()
