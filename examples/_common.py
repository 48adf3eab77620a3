"""What every example shares: the command line, the run folder, the data, the clock, the figures.

Importing this module selects matplotlib's non-interactive Agg backend, so import it before
``matplotlib.pyplot``. The examples only ever write PNG files; none opens a window.

Command line (every script):

    --epochs N       training length in epochs (iteration-based scripts convert it with
                     ceil(N * train_size / batch_size))
    --iters N        training length in iterations (only the scripts the book runs by
                     iteration count)
    --train-size N   use only the first N training images
    --test-size N    use only the first N test images
    --data-dir DIR   folder holding the four MNIST .gz files
    --fast           fast mode: float32 networks, one forward pass a step (default: parity
                     mode, the book's float64 numbers; FASTCONV_MODE=fast does the same)
    --backend NAME   numba (default) or numpy, passed to fastconv.use_backend
    --dtype NAME     float32 or float64: overrides the mode's dtype for the networks
    --seed N         seed np.random (and the Trainer) for a repeatable run
    --out DIR        the run's folder, used as it is (default: a new folder
                     examples/out/<script>/<date-time>/ for every run)
    --quick          tiny settings that finish in seconds (a smoke test, not an experiment)

The Trainer-based scripts also take ``--checkpoint [PATH]`` and ``--resume`` (see
:func:`make_parser`).
"""
import argparse
import contextlib
import inspect
import json
import math
import os
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402

import fastconv  # noqa: E402
from fastconv.datasets import MNISTNotFoundError, load_mnist  # noqa: E402
from fastconv.fileio import atomic_write  # noqa: E402
from fastconv.util import smooth_curve  # noqa: E402

OUT_ROOT = Path(__file__).resolve().parent / "out"
CHECKPOINT_NAME = "checkpoint.npz"
COMMAND_NAME = "command.json"  # a checkpointed run's options, which --resume gives again
_IMPORTED = time.perf_counter()  # the fallback clock where the process start is unknown


# ---- words and the clock ------------------------------------------------------------------

def count(n, word, plural=None):
    """'1 epoch', '2 epochs', '1,000 images'."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def _process_age_linux():
    # /proc/self/stat's 22nd field is the start time in clock ticks after boot; the command
    # name (2nd field) may hold spaces, so count from its closing parenthesis
    with open("/proc/self/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime", encoding="ascii") as handle:
        uptime = float(handle.read().split()[0])
    return uptime - started


def seconds_since_start():
    """Wall seconds since the process started (interpreter start-up and imports included).

    Linux reads it from /proc; elsewhere the clock starts when this module is imported."""
    with contextlib.suppress(OSError, ValueError, IndexError, AttributeError):
        return _process_age_linux()
    return time.perf_counter() - _IMPORTED


# ---- command line -------------------------------------------------------------------------

def seed_value(text):
    """--seed: what np.random.seed takes, which every example calls with it."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**32 - 1, got {text}")
    return value


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def make_parser(description, *, iters=False, checkpoint=False):
    """The shared options; a script adds its own before calling :func:`parse_args`.

    ``iters``: the script is iteration-based like the book's, so it also takes ``--iters``
    (mutually exclusive with ``--epochs``). ``checkpoint``: it trains with the Trainer, so it
    takes ``--checkpoint [PATH]`` and ``--resume``.
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
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: float32 networks, one forward pass a step (default: "
                             "parity mode, the book's numbers in float64)")
    parser.add_argument("--backend", choices=fastconv.backend.BACKENDS, default="numba",
                        help="kernel backend (default: numba)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default=None,
                        help="the networks' dtype (default: the mode's: float64 in parity "
                             "mode, float32 in fast mode)")
    parser.add_argument("--seed", type=seed_value, default=None,
                        help="seed for np.random and the Trainer (default: unseeded, "
                             "as in the book)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the run's output folder, used as it is (default: a new folder "
                             "examples/out/<script>/<date-time>/)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings that finish in seconds")
    if checkpoint:
        parser.add_argument("--checkpoint", nargs="?", const=CHECKPOINT_NAME, default=None,
                            metavar="PATH",
                            help="save the training state after every epoch and resume from "
                                 f"PATH when it exists (default PATH: {CHECKPOINT_NAME} in "
                                 "the run's folder)")
        parser.add_argument("--resume", action="store_true",
                            help="continue the latest run of this script that has a "
                                 "checkpoint, in its folder (or in --out)")
    return parser


def script_name():
    return Path(sys.argv[0]).stem


def new_run_folder(root, stem):
    """A folder ``<root>/<stem>/<YYYYmmdd-HHMMSS>`` that no other run has, created now.

    Two runs started in the same second get ``...-2``, ``...-3``: ``mkdir`` without
    ``exist_ok`` is atomic, so even two processes racing cannot share a folder."""
    parent = Path(root) / stem
    parent.mkdir(parents=True, exist_ok=True)
    base = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        folder = parent / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run folder under {parent}")


def latest_run_with_checkpoint(root, stem):
    """The newest ``<root>/<stem>/<date-time>`` folder holding a checkpoint, or None."""
    parent = Path(root) / stem
    runs = sorted((p for p in parent.glob("*") if (p / CHECKPOINT_NAME).is_file()),
                  key=lambda p: (p.stat().st_mtime, p.name))
    return runs[-1] if runs else None


def _trainer_takes_checkpoints():
    from fastconv.trainer import Trainer
    return "checkpoint" in inspect.signature(Trainer).parameters


def _choose_out(parser, args, outputs):
    """The run's folder: --out as given (the resumed run's with --resume), or a new dated
    one."""
    resume = getattr(args, "resume", False)
    if args.out is not None:
        out = Path(args.out)
        clashes = [name for name in outputs if (out / name).exists()]
        if clashes and not resume:
            parser.error(f"--out {out} already holds {', '.join(clashes)} from an earlier run; "
                         "give a new folder, or --resume to continue that run")
        out.mkdir(parents=True, exist_ok=True)
        return out
    return new_run_folder(OUT_ROOT, script_name())


def _resumed_folder(parser, args):
    """The folder of the run --resume continues: --out as given, else the newest run of this
    script that holds a checkpoint."""
    if args.out is not None:
        return Path(args.out)
    out = latest_run_with_checkpoint(OUT_ROOT, script_name())
    if out is None:
        parser.error(f"--resume: no run of {script_name()} under "
                     f"{OUT_ROOT / script_name()} has a {CHECKPOINT_NAME}; start one with "
                     "--checkpoint")
    return out


def _check_resumable(parser, args):
    """Refuse --resume where the checkpoint it would continue does not exist: the run would
    start over, and write over what --out holds."""
    path = _checkpoint_path(parser, args)
    if not path.is_file():
        parser.error(f"--resume: there is no checkpoint {path} to continue; give --out the "
                     f"folder of a run started with --checkpoint, or leave --resume out")


def _resumed_command(parser, folder):
    """The options of the run in folder (its command.json), or [] for a run started before
    they were kept."""
    path = folder / COMMAND_NAME
    if not path.is_file():
        return []
    try:
        words = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        parser.error(f"--resume: cannot read {path} ({exc}); give the run's options again")
    if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
        parser.error(f"--resume: {path} is not a list of options; give the run's options "
                     "again")
    return words


def _checkpoint_path(parser, args):
    wanted = getattr(args, "checkpoint", None)
    if getattr(args, "resume", False) and wanted is None:
        wanted = CHECKPOINT_NAME
    if wanted is None:
        return None
    if not _trainer_takes_checkpoints():
        parser.error("--checkpoint and --resume need a fastconv whose Trainer takes "
                     "checkpoint= (this one does not)")
    path = Path(wanted)
    # the bare default name lives in the run's folder; a path the user typed is used as it is
    return args.out / path if wanted == CHECKPOINT_NAME else path


def parse_args(parser, defaults, quick=None, argv=None, outputs=()):
    """Parse, fill in defaults, and set up the run (mode, backend, seed, output folder).

    ``defaults`` maps option names (``epochs``, ``iters``, ``train_size`` or any option the
    script added with ``default=None``) to the book's values; ``quick`` maps some of them to
    the values ``--quick`` uses instead. An option given on the command line always wins.
    ``outputs``: the files the script writes, which a given ``--out`` must not hold already.
    """
    quick = quick or {}
    for action in parser._actions:  # show the book's values in --help
        if action.dest in defaults and action.help:
            # in place of the parser's own "(default: ...)": a script may set another
            action.help = re.sub(r" \(default: [^)]*\)$", "", action.help)
            action.help += f" (default: {defaults[action.dest]}"
            action.help += (f"; --quick: {quick[action.dest]})" if action.dest in quick
                            else ")")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if getattr(args, "resume", False):
        # the resumed run's own options first, so that those given now win; its folder is
        # looked up once, so that both come from the same run
        folder = _resumed_folder(parser, args)
        args = parser.parse_args(_resumed_command(parser, folder) + argv)
        args.out = folder
        _check_resumable(parser, args)
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

    if args.fast:
        fastconv.set_mode("fast")
    fastconv.use_backend(args.backend)
    if args.seed is not None:
        np.random.seed(args.seed)
    args.out = _choose_out(parser, args, outputs)
    args.checkpoint_path = _checkpoint_path(parser, args)
    if args.checkpoint_path is not None and not args.resume:
        with atomic_write(args.out / COMMAND_NAME, "w") as handle:
            json.dump(argv, handle)
    dtype = np.dtype(args.dtype) if args.dtype else fastconv.mode.default_dtype()
    args.dtype = np.dtype(args.dtype) if args.dtype else None  # None: the networks follow the mode
    mode = fastconv.get_mode()
    print(f"{script_name()}.py: mode={mode} ({'the book' if mode == 'parity' else 'float32'}"
          f"{'' if args.dtype is None else ', dtype overridden'}), backend={args.backend}, "
          f"dtype={dtype}, seed={args.seed}" + (" [--quick]" if args.quick else ""))
    print(f"Output folder: {args.out}")
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

def find_data(args, **kwargs):
    """``load_mnist(data_dir=args.data_dir, **kwargs)``; missing data ends the script with
    load_mnist's explanation, worded for this command line (``--data-dir``, not the Python
    argument ``data_dir=``)."""
    try:
        return load_mnist(data_dir=args.data_dir, **kwargs)
    except MNISTNotFoundError as exc:
        message = str(exc).replace("pass data_dir= a folder", "give --data-dir a folder")
        message = message.replace("[data_dir=;", "[--data-dir;")
        sys.exit(f"{script_name()}.py: {message}")


def load_data(args, **kwargs):
    """``load_mnist(**kwargs)`` from ``--data-dir`` (``find_data``), cut to
    ``--train-size``/``--test-size``."""
    start = time.perf_counter()
    (x_train, t_train), (x_test, t_test) = find_data(args, **kwargs)
    if args.train_size is not None:
        x_train, t_train = x_train[:args.train_size], t_train[:args.train_size]
    if args.test_size is not None:
        x_test, t_test = x_test[:args.test_size], t_test[:args.test_size]
    print(f"MNIST: {count(len(x_train), 'training image')} and {count(len(x_test), 'test image')}"
          f" (loaded in {time.perf_counter() - start:.2f} s)")
    return (x_train, t_train), (x_test, t_test)


# ---- timing --------------------------------------------------------------------------------

class Clock:
    """Times the training steps apart from everything else, the first ones apart from the rest.

    ``with clock.step(n):`` around one training step of ``n`` images. The first
    ``warmup_steps`` steps (one per network trained) include Numba's compilation on a fresh
    install, so they are reported on their own and images/s counts the steady steps only.
    ``clock.lap_text()`` describes the steps since the previous lap (one epoch);
    ``clock.report()`` ends the run.
    """

    def __init__(self, warmup_steps=1):
        self.warmup_left = warmup_steps
        self.warmup_seconds = 0.0
        self.seconds = 0.0  # steady steps only
        self.images = 0
        self._lap = [0.0, 0.0, 0]  # all seconds, steady seconds, steady images

    def step(self, images):
        return _Step(self, images)

    def record(self, seconds, images):
        self._lap[0] += seconds
        if self.warmup_left > 0:
            self.warmup_left -= 1
            self.warmup_seconds += seconds
            return
        self.seconds += seconds
        self.images += images
        self._lap[1] += seconds
        self._lap[2] += images

    def add_steady(self, seconds, images):
        """Steady training time measured elsewhere (a Trainer's)."""
        self.seconds += seconds
        self.images += images
        self._lap[0] += seconds
        self._lap[1] += seconds
        self._lap[2] += images

    def lap_text(self):
        """The steps since the previous lap, as '1.23 s, 4567 images/s', and start a new lap."""
        total, steady, images = self._lap
        self._lap = [0.0, 0.0, 0]
        return f"{total:.2f} s, {rate(images, steady)} images/s"

    def report(self):
        """Print the run's wall time since the process started, and the training speed."""
        if self.warmup_seconds:
            print(f"First steps: {self.warmup_seconds:.2f} s (Numba compiles here on a "
                  "fresh install; not in images/s)")
        # a --quick run's steady steps take milliseconds: "0.0 s" would say nothing
        spent = f"{self.seconds:.1f} s" if self.seconds >= 1 else f"{self.seconds * 1e3:.0f} ms"
        print(f"Training: {count(self.images, 'image')} in {spent} of steady training steps, "
              f"{rate(self.images, self.seconds)} images/s")
        print(f"Total wall time: {seconds_since_start():.1f} s (from process start)")


class _Step:
    __slots__ = ("clock", "images", "start")

    def __init__(self, clock, images):
        self.clock, self.images = clock, images

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.clock.record(time.perf_counter() - self.start, self.images)
        return False


def rate(images, seconds):
    """images/s as a whole number (or 'n/a' when nothing was timed)."""
    return f"{images / seconds:,.0f}" if seconds > 0 and images else "n/a"


class TrainerLog:
    """A ``log=`` for fastconv's Trainer that adds each finished epoch's time to the output.

    The Trainer logs an epoch's accuracy right after that epoch's first step, and the final
    accuracy after the last step; before passing a message on, this prints the training time
    of the epochs the Trainer finished since the previous message.
    """

    def __init__(self):
        self.trainer = None
        self._shown = None

    def __call__(self, message):
        self.flush()
        print(message)

    def flush(self):
        if self.trainer is None:
            return
        times = self.trainer.epoch_time_list
        if self._shown is None:  # a resumed Trainer already holds the earlier epochs' times
            self._shown = len(times) if getattr(self.trainer, "resumed_from", None) else 0
        images = self.trainer.iter_per_epoch * self.trainer.batch_size
        while self._shown < len(times):
            seconds = times[self._shown]
            self._shown += 1
            note = " (first step included)" if self._shown == 1 else ""
            print(f"epoch {self._shown}/{self.trainer.epochs}: {seconds:.2f} s of training"
                  f"{note}, {rate(images, seconds)} images/s")


def add_trainer_time(clock, trainer):
    """Count a finished Trainer's training steps on ``clock``, its first step apart when the
    Trainer measures it (``first_step_time``), else all of them as steady."""
    first = getattr(trainer, "first_step_time", None)
    steady_rate = getattr(trainer, "steady_images_per_sec", None)
    if first is not None and steady_rate:
        steps = trainer.current_iter - (getattr(trainer, "resumed_from", None) or 0)
        images = (steps - 1) * trainer.batch_size
        clock.warmup_seconds += first
        clock._lap[0] += first
        clock.add_steady(images / steady_rate, images)
    else:
        clock.add_steady(sum(trainer.epoch_time_list), trainer.max_iter * trainer.batch_size)


def trainer_options(args):
    """The Trainer keywords this run's options ask for (``checkpoint=``)."""
    return {} if args.checkpoint_path is None else {"checkpoint": str(args.checkpoint_path)}


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
                  f"for {count(len(networks), 'network')}")
    for name, values in losses.items():
        print(f"{name}: last mini-batch loss {values[-1]:.4f}")
    return losses


def plot_losses(args, losses, markers, title, file_name):
    """The book's comparison plot, each smoothed loss against the iteration, on a log scale:
    the curves start together near 2.3 and end an order of magnitude apart, which a linear
    0-1 range (the book's) cuts off on a short run."""
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    longest = max(len(values) for values in losses.values())
    for name, values in losses.items():
        ax.plot(np.arange(len(values)), smoothed(values), marker=markers.get(name),
                markevery=max(longest // 10, 1), label=name)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    # label 1-2-5 per decade; a range narrower than a decade needs more labels to be read
    subs = (1, 2, 5) if high / low > 10 else (1, 1.5, 2, 3, 5, 7)
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("iterations")
    ax.set_ylabel("mini-batch loss, smoothed (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    legend_below(fig, ax.get_legend_handles_labels(), ncol=len(losses))
    return save_figure(fig, args, file_name)


# ---- figures -------------------------------------------------------------------------------

def smoothed(values):
    """``smooth_curve(values)``, or the values as they are when too few to smooth (< 11)."""
    values = np.asarray(values, dtype=np.float64)
    return smooth_curve(values) if len(values) >= 11 else values


def legend_below(fig, handles_labels, ncol):
    """One legend for the figure, under its axes, where it covers no data."""
    handles, labels = handles_labels
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
               frameon=False)


def save_figure(fig, args, name):
    """Save ``fig`` as ``<out>/<name>`` (PNG, atomically), close it and print the path."""
    path = args.out / name
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"Saved figure: {os.fspath(path)}")
    return path


def save_params(network, path):
    """``network.save_params`` into ``path`` atomically: a run killed while saving leaves
    the previous file whole (``save_params`` wants a file name, ``atomic_write`` gives a
    handle, so the bytes pass through a private temporary folder)."""
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".params-") as scratch:
        staged = Path(scratch) / path.name
        network.save_params(str(staged))
        with atomic_write(path) as handle:
            handle.write(staged.read_bytes())
    print(f"Saved network parameters: {path}")


def fitted_range(values, floor=0.0, ceiling=1.0):
    """(low, high) that shows every value with a margin, within [floor - m, ceiling + m]."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=np.float64)
    low, high = (values.min(), values.max()) if values.size else (floor, ceiling)
    margin = max(0.08 * (high - low), 0.01)
    return max(low - margin, floor - margin / 2), min(high + margin, ceiling + margin / 2)


def crowded_tail(curves):
    """The first epoch of a zoom panel, or None when none is needed.

    Accuracy curves jump from chance at the first epoch and then crowd near their end value;
    the zoom starts at the first epoch from which every point of every curve lies in the top
    quarter of the whole range, provided that leaves at least three epochs to show."""
    length = min(len(values) for values in curves.values())
    if length < 4:
        return None
    arrays = [np.asarray(values[:length], dtype=np.float64) for values in curves.values()]
    everything = np.concatenate(arrays)
    spread = np.ptp(everything)
    if not spread > 0:
        return None
    floor = everything.max() - 0.25 * spread
    for start in range(1, length - 2):
        if all(np.all(values[start:] >= floor) for values in arrays):
            return start
    return None


STYLES = {"train": dict(marker="o", linestyle="-"), "test": dict(marker="s", linestyle="--")}


def draw_accuracy(ax, curves, final=None, start=0, mark_every=None):
    """Accuracy curves from epoch ``start`` on, y fitted to what is drawn; ``final`` (a
    Trainer's accuracy on the whole test set after the last step) as a star one epoch after
    the last point, inside the axes."""
    length = min(len(values) for values in curves.values())
    x = np.arange(start, length)
    every = mark_every or max((length - start) // 12, 1)
    shown = []
    for name, values in curves.items():
        ax.plot(x, values[start:], label=name, markevery=every, **STYLES.get(name, {}))
        shown += list(values[start:])
    if final is not None:
        ax.plot([length], [final], marker="*", markersize=14, linestyle="none",
                color="tab:red", label=f"final test accuracy ({final:.4f})")
        shown.append(final)
    ax.set_ylim(*fitted_range(shown))
    ax.set_xlim(start - 0.5, length - 0.5 + (final is not None))
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epochs")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)


def plot_accuracy(args, curves, title, file_name, final_test_acc=None):
    """Accuracy against the epoch (``curves``: {'train': [...], 'test': [...]}), with a second,
    zoomed panel over the later epochs when the curves crowd near their end value."""
    zoom_from = crowded_tail(curves)
    panels = 1 if zoom_from is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False,
                             layout="constrained")
    draw_accuracy(axes[0, 0], curves, final_test_acc)
    axes[0, 0].set_title("all epochs" if panels == 2 else "")
    if zoom_from is not None:
        draw_accuracy(axes[0, 1], curves, final_test_acc, start=zoom_from)
        axes[0, 1].set_title(f"epochs {zoom_from}-{min(map(len, curves.values()))}, zoomed")
    fig.suptitle(title)
    legend_below(fig, axes[0, 0].get_legend_handles_labels(), ncol=3)
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
                      evaluate_sample_num_per_epoch=1000, seed=args.seed, log=log,
                      **trainer_options(args))
    log.trainer = trainer
    trainer.train()
    log.flush()
    add_trainer_time(clock, trainer)

    save_params(network, args.out / params_name)
    print(f"Final test accuracy: {trainer.final_test_acc:.4f}")
    plot_accuracy(args, {"train": trainer.train_acc_list, "test": trainer.test_acc_list},
                  title, plot_name, final_test_acc=trainer.final_test_acc)
    clock.report()
    return trainer
