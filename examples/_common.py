"""What every example shares: the command line, the data, the clock and the figures.

Importing this module selects matplotlib's non-interactive Agg backend, so import it before
``matplotlib.pyplot``. The examples only ever write PNG files; none opens a window.

Command line (every script):

    --epochs N       training length in epochs (iteration-based scripts convert it with
                     ceil(N * train_size / batch_size))
    --iters N        training length in iterations (only the scripts the book runs by
                     iteration count)
    --train-size N   use only the first N training images
    --test-size N    use only the first N test images
    --data-dir DIR   folder holding the four MNIST .gz files (load_mnist's data_dir=)
    --backend NAME   numba (default) or numpy, passed to fastconv.use_backend
    --dtype NAME     float32 (default) or float64, the networks' dtype
    --seed N         seed np.random (and the Trainer) for a repeatable run
    --out DIR        folder for the PNGs and saved parameters (default examples/out/)
    --quick          tiny settings that finish in seconds (a smoke test, not an experiment)
"""
import argparse
import math
import os
import sys
import time
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

import fastconv  # noqa: E402
from fastconv.datasets import load_mnist  # noqa: E402
from fastconv.util import smooth_curve  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
_START = time.perf_counter()  # the wall clock starts when the first example module loads


# ---- command line -------------------------------------------------------------------------

def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def make_parser(description, *, iters=False):
    """The shared options; a script adds its own before calling :func:`parse_args`.

    ``iters``: the script is iteration-based like the book's, so it also takes ``--iters``
    (mutually exclusive with ``--epochs``).
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = parser.add_mutually_exclusive_group() if iters else parser
    length.add_argument("--epochs", type=positive_int, default=None,
                        help="training length in epochs" + (
                            " (converted to iterations: ceil(N * train_size / batch_size))"
                            if iters else ""))
    if iters:
        length.add_argument("--iters", type=positive_int, default=None,
                            help="training length in iterations")
    parser.add_argument("--train-size", type=positive_int, default=None,
                        help="use only the first N training images")
    parser.add_argument("--test-size", type=positive_int, default=None,
                        help="use only the first N test images")
    parser.add_argument("--data-dir", default=None,
                        help="folder holding the four MNIST .gz files (default: "
                             "$FASTCONV_DATA/mnist, then the user cache)")
    parser.add_argument("--backend", choices=fastconv.backend.BACKENDS, default="numba",
                        help="kernel backend (default: numba)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="dtype of the networks (default: float32; float64 gives the "
                             "book's numbers)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for np.random and the Trainer (default: unseeded, "
                             "as in the book)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder for PNGs and parameters (default: examples/out/)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings that finish in seconds")
    return parser


def parse_args(parser, defaults, quick=None, argv=None):
    """Parse, fill in defaults, and set up the run (backend, seed, output folder).

    ``defaults`` maps option names (``epochs``, ``iters``, ``train_size`` or any option the
    script added with ``default=None``) to the book's values; ``quick`` maps some of them to
    the values ``--quick`` uses instead. An option given on the command line always wins.
    """
    quick = quick or {}
    for action in parser._actions:  # show the book's values in --help
        if action.dest in defaults and action.help:
            action.help += f" (default: {defaults[action.dest]}"
            action.help += (f"; --quick: {quick[action.dest]})" if action.dest in quick
                            else ")")
    args = parser.parse_args(argv)
    given_length = any(getattr(args, name, None) is not None for name in ("epochs", "iters"))
    for name, value in defaults.items():
        if name in ("epochs", "iters") and given_length:
            continue  # --epochs and --iters exclude each other: keep the one the user gave
        if getattr(args, name, None) is None:
            setattr(args, name, quick.get(name, value) if args.quick else value)
    if args.quick:
        for name, value in quick.items():
            if name not in defaults and getattr(args, name, None) is None:
                setattr(args, name, value)

    fastconv.use_backend(args.backend)
    if args.seed is not None:
        np.random.seed(args.seed)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    args.dtype = np.dtype(args.dtype)
    print(f"{Path(sys.argv[0]).name}: backend={args.backend}, dtype={args.dtype}, "
          f"seed={args.seed}, out={args.out}" + (" [--quick]" if args.quick else ""))
    return args


def iterations(args, train_size, batch_size):
    """``--iters`` as given, or ``--epochs`` converted with the number of batches per epoch."""
    if getattr(args, "iters", None) is not None:
        return args.iters
    return math.ceil(args.epochs * train_size / batch_size)


def iters_per_epoch(train_size, batch_size):
    """Steps per epoch, an integer (the book's float never divides a count evenly when
    train_size is not a multiple of batch_size)."""
    return max(math.ceil(train_size / batch_size), 1)


# ---- data ----------------------------------------------------------------------------------

def load_data(args, **kwargs):
    """``load_mnist(**kwargs)`` from ``--data-dir``, cut to ``--train-size``/``--test-size``."""
    start = time.perf_counter()
    (x_train, t_train), (x_test, t_test) = load_mnist(data_dir=args.data_dir, **kwargs)
    if args.train_size is not None:
        x_train, t_train = x_train[:args.train_size], t_train[:args.train_size]
    if args.test_size is not None:
        x_test, t_test = x_test[:args.test_size], t_test[:args.test_size]
    print(f"MNIST: {len(x_train)} training and {len(x_test)} test images "
          f"(loaded in {time.perf_counter() - start:.2f} s)")
    return (x_train, t_train), (x_test, t_test)


# ---- timing --------------------------------------------------------------------------------

class Clock:
    """Times the training steps (images and seconds) apart from everything else.

    ``with clock.step(n):`` around one training step of ``n`` images; ``clock.add`` for time
    measured elsewhere (a Trainer's ``epoch_time_list``); ``clock.lap()`` for the seconds and
    images since the previous lap (one epoch); ``clock.report()`` at the end.
    """

    def __init__(self):
        self.seconds = 0.0
        self.images = 0
        self._lap_seconds = 0.0
        self._lap_images = 0

    def step(self, images):
        return _Step(self, images)

    def add(self, seconds, images):
        self.seconds += seconds
        self.images += images
        self._lap_seconds += seconds
        self._lap_images += images

    def lap(self):
        """(seconds, images) since the previous lap, and start a new one."""
        lap = self._lap_seconds, self._lap_images
        self._lap_seconds, self._lap_images = 0.0, 0
        return lap

    def lap_text(self):
        """The lap as '1.23 s, 4567 images/s'."""
        seconds, images = self.lap()
        return f"{seconds:.2f} s, {rate(images, seconds)} images/s"

    def report(self):
        """Print the run's total wall time and the training throughput."""
        wall = time.perf_counter() - _START
        print(f"Total wall time: {wall:.1f} s")
        print(f"Training: {self.images} images in {self.seconds:.1f} s of training steps, "
              f"{rate(self.images, self.seconds)} images/s")


class _Step:
    __slots__ = ("clock", "images", "start")

    def __init__(self, clock, images):
        self.clock, self.images = clock, images

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.clock.add(time.perf_counter() - self.start, self.images)
        return False


def rate(images, seconds):
    """images/s as a whole number (or 'n/a' when nothing was timed)."""
    return f"{images / seconds:.0f}" if seconds > 0 else "n/a"


class TrainerLog:
    """A ``log=`` for fastconv's Trainer that adds each finished epoch's time to the output.

    The Trainer logs an epoch's accuracy right after that epoch's first step, and the final
    accuracy after the last step; before passing a message on, this prints the training time
    and images/s of the epochs the Trainer finished since the previous message.
    """

    def __init__(self):
        self.trainer = None
        self._shown = 0

    def __call__(self, message):
        self.flush()
        print(message)

    def flush(self):
        times = self.trainer.epoch_time_list if self.trainer is not None else []
        images = self.trainer.iter_per_epoch * self.trainer.batch_size if times else 0
        while self._shown < len(times):
            seconds = times[self._shown]
            self._shown += 1
            print(f"epoch {self._shown}/{self.trainer.epochs}: {seconds:.2f} s of training, "
                  f"{rate(images, seconds)} images/s")


def add_trainer_time(clock, trainer):
    """Count a finished Trainer's training steps on ``clock``."""
    clock.add(sum(trainer.epoch_time_list), trainer.max_iter * trainer.batch_size)


# ---- the ch06 comparisons: several networks on the same mini-batches -----------------------

def train_side_by_side(networks, optimizers, x_train, t_train, max_iterations, batch_size,
                       clock, print_every=100):
    """Train each ``networks[name]`` with ``optimizers[name]`` on the same mini-batches.

    Like the book's comparison scripts: one batch drawn with replacement per iteration
    (``np.random.choice``), every network trained on it, the losses printed every
    ``print_every`` iterations. Returns ``{name: [loss of each step]}``, the loss of each
    step's own forward pass (``last_loss``, before the update). Prints the time of each
    epoch's training steps.
    """
    train_size = x_train.shape[0]
    iter_per_epoch = iters_per_epoch(train_size, batch_size)
    losses = {name: [] for name in networks}
    for i in range(max_iterations):
        batch_mask = np.random.choice(train_size, batch_size)
        x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
        for name, network in networks.items():
            with clock.step(batch_size):
                grads = network.gradient(x_batch, t_batch)
                optimizers[name].update(network.params, grads)
            losses[name].append(float(network.last_loss))

        if i % print_every == 0:
            print(f"=========== iteration {i} ===========")
            for name, network in networks.items():
                print(f"{name}: {network.loss(x_batch, t_batch):.6f}")
        if (i + 1) % iter_per_epoch == 0 or i + 1 == max_iterations:
            epoch = math.ceil((i + 1) / iter_per_epoch)
            print(f"epoch {epoch} (up to iteration {i}): {clock.lap_text()} "
                  f"for {len(networks)} networks")
    for name, values in losses.items():
        print(f"{name}: last mini-batch loss {values[-1]:.4f}")
    return losses


def plot_losses(args, losses, markers, ylim, title, file_name, mark_every=100):
    """The book's comparison plot: each smoothed loss curve against the iteration."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, values in losses.items():
        ax.plot(np.arange(len(values)), smoothed(values), marker=markers.get(name),
                markevery=mark_every, label=name)
    ax.set_xlabel("iterations")
    ax.set_ylabel("loss")
    ax.set_ylim(*ylim)
    ax.legend()
    ax.set_title(title)
    return save_figure(fig, args, file_name)


# ---- figures -------------------------------------------------------------------------------

def smoothed(values):
    """``smooth_curve(values)``, or the values as they are when too few to smooth (< 11)."""
    values = np.asarray(values, dtype=np.float64)
    return smooth_curve(values) if len(values) >= 11 else values


def save_figure(fig, args, name):
    """Save ``fig`` as ``<out>/<name>`` (PNG), close it and print the path."""
    path = args.out / name
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"Saved figure: {os.fspath(path)}")
    return path


def plot_accuracy(args, train_acc_list, test_acc_list, title, file_name, mark_every=2,
                  final_test_acc=None):
    """The book's accuracy plot: train and test accuracy against the epoch.

    ``final_test_acc`` (a Trainer's accuracy on the whole test set after the last step) is
    drawn as a star one epoch after the last point: the Trainer measures each epoch's
    accuracy after that epoch's first step, so without it a short run shows no result.
    """
    fig, ax = plt.subplots(figsize=(7, 5))
    x = np.arange(len(train_acc_list))
    ax.plot(x, train_acc_list, marker="o", label="train", markevery=mark_every)
    ax.plot(x, test_acc_list, marker="s", label="test", markevery=mark_every)
    if final_test_acc is not None:
        ax.plot([len(train_acc_list)], [final_test_acc], marker="*", markersize=14,
                linestyle="none", label=f"final test ({final_test_acc:.4f})")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epochs")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.0)
    ax.legend(loc="lower right")
    ax.set_title(title)
    return save_figure(fig, args, file_name)


def train_book_style(args, network, data, title, params_name, plot_name):
    """The book's ch07/ch08 run: Trainer with Adam (lr 0.001), batch 100, 1000 images checked
    per epoch; saves the parameters and the accuracy plot, and reports the timing."""
    from fastconv.trainer import Trainer
    (x_train, t_train), (x_test, t_test) = data
    clock = Clock()
    log = TrainerLog()
    trainer = Trainer(network, x_train, t_train, x_test, t_test,
                      epochs=args.epochs, mini_batch_size=100,
                      optimizer='Adam', optimizer_param={'lr': 0.001},
                      evaluate_sample_num_per_epoch=1000, seed=args.seed, log=log)
    log.trainer = trainer
    trainer.train()
    add_trainer_time(clock, trainer)

    params_path = args.out / params_name
    network.save_params(str(params_path))
    print(f"Saved Network Parameters: {params_path}")
    print(f"Final test accuracy: {trainer.final_test_acc:.4f}")
    plot_accuracy(args, trainer.train_acc_list, trainer.test_acc_list, title, plot_name,
                  final_test_acc=trainer.final_test_acc)
    clock.report()
    return trainer
