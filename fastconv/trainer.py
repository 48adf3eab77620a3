"""Drop-in for the book's ``common/trainer.py``: mini-batch training with per-epoch accuracy.

Same constructor, attributes (``train_loss_list``, ``train_acc_list``, ``test_acc_list``,
``iter_per_epoch``, ``max_iter``, ``current_iter``, ``current_epoch``, ``batch_size``,
``optimizer``, ...) and methods (``train_step``, ``train``) as the book. What a step does
follows :mod:`fastconv.mode`, read when the Trainer is made:

* ``"parity"`` (the default): the book's step. The loss recorded in ``train_loss_list`` comes
  from ``network.loss`` run again AFTER the update, as the book does (DeepConvNet's Dropout
  draws its masks there, so this call keeps every later mini-batch the book's), and with
  ``verbose`` every step prints the book's ``train loss:`` line; the epoch and final lines are
  the book's too, so a book script's output matches line for line.
* ``"fast"``: one forward pass per step. The recorded loss is the one ``network.gradient``
  computed (its ``last_loss``): the mini-batch loss in training mode BEFORE the update. A
  network without ``last_loss`` (not from fastconv) falls back to the book's ``network.loss``.
  With ``verbose``, a tqdm bar (epoch, loss, accuracies, steady images/s, ETA) replaces the
  per-step lines, and a timing summary follows the final accuracy.

Differences from the book in both modes:

* Epochs: ``iter_per_epoch = max(ceil(train_size / mini_batch_size), 1)``, an integer, and
  ``max_iter = epochs * iter_per_epoch``. Accuracy is evaluated, and ``current_epoch``
  counted, after the steps at iterations 0, iter_per_epoch, 2*iter_per_epoch, ... exactly like
  the book (so each list of accuracies has ``epochs`` entries); the book's float
  ``train_size / mini_batch_size`` never divides ``current_iter`` evenly when the training set
  is not a multiple of the batch size, and then evaluates only once.
* ``train()`` trains until ``current_iter`` reaches ``max_iter`` (the book's runs ``max_iter``
  more steps on every call): a second call runs nothing new and says so; raise ``max_iter``
  to train on.
* Batches are drawn with replacement, like the book. ``seed=None``: from ``np.random``
  exactly as the book does (``np.random.choice``), so ``np.random.seed`` controls it.
  ``seed=<int>``: from ``np.random.default_rng(seed)``, and ``np.random.seed(seed)`` is called
  too, since Dropout draws its masks from ``np.random``; two runs with the same seed are then
  identical.
* ``checkpoint=PATH`` saves the whole training state atomically at the end of every epoch,
  every ``checkpoint_every`` steps if given, and at Ctrl-C, and ``train()`` resumes from PATH
  when it exists: a run killed at any moment and started again with the same command ends
  with the same bits as an uninterrupted one (see :mod:`fastconv.checkpoint`). Under
  ``python -m fastconv --checkpoint DIR``, a Trainer made without it gets one in DIR
  (``checkpoint_trainers_into``).
* ``progress`` (default: on in fast mode when ``verbose``): the tqdm bar. Messages go through
  ``log`` (default ``print``).
* Timing: ``epoch_time_list`` holds the wall time of each epoch's training steps (sampling,
  gradient, update, the parity loss pass; the accuracy evaluation excluded). The first step a
  Trainer runs in a process compiles Numba's kernels: its time is ``first_step_time``, and the
  images/s figures (``steady_images_per_sec``, ``images_per_sec_list``, the bar) count only
  the steps after it.
* ``optimizer`` is a name (case-insensitive, as in the book) or an optimizer instance (then
  ``optimizer_param`` is ignored). The final test accuracy is kept in ``final_test_acc``.
"""
import contextlib
from collections.abc import Mapping
import math
import os
import re
import signal
import sys
import threading
import time

import numpy as np

from fastconv import checkpoint as _checkpoint
from fastconv import mode as _mode
from fastconv._validate import check_int
from fastconv.fileio import (LockedError, hold_lock, lock_file_for, release_lock,
                             remove_stale_temporaries)
from fastconv.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from fastconv.progress import StepClock, format_duration, plural

# What the book's module brings to a star import (it has no __all__): scripts rely on it,
# e.g. ch06/optimizer_compare_mnist.py gets np and the optimizers from common.optimizer this way
__all__ = ["Trainer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam",
           "np", "os", "sys"]

OPTIMIZERS = {'sgd': SGD, 'momentum': Momentum, 'nesterov': Nesterov,
              'adagrad': AdaGrad, 'rmsprop': RMSprop, 'adam': Adam}


def _make_optimizer(optimizer, optimizer_param):
    if isinstance(optimizer, str):
        try:
            cls = OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of "
                             f"{sorted(OPTIMIZERS)} or pass an optimizer instance") from None
        if optimizer_param is not None and not isinstance(optimizer_param, Mapping):
            raise TypeError(f"optimizer_param must be a dict of the optimizer's arguments; got "
                            f"{type(optimizer_param).__name__}")
        try:
            return cls(**(optimizer_param or {}))
        except TypeError as exc:  # an argument the optimizer does not have
            raise TypeError(f"optimizer_param does not fit {cls.__name__}: {exc}") from None
    return _check_optimizer(optimizer, "optimizer must be a name or an object")


def _check_optimizer(optimizer, what):
    if not callable(getattr(optimizer, "update", None)):
        raise TypeError(f"{what} with update(params, grads); got {optimizer!r}")
    return optimizer


def _check_data(network, x_train, t_train, x_test, t_test):
    """Raises before training starts where the network or the data cannot train: the step and
    the epoch's evaluation would find it only after the first update."""
    if not (callable(getattr(network, "gradient", None)) and callable(
            getattr(network, "accuracy", None)) and isinstance(getattr(network, "params", None),
                                                                 Mapping)):
        raise TypeError("network must have gradient(x, t), accuracy(x, t) and a params dict; "
                        f"got {type(network).__name__}")
    for x_name, x, t_name, t in (("x_train", x_train, "t_train", t_train),
                                 ("x_test", x_test, "t_test", t_test)):
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise TypeError(f"{x_name} must be an array of samples, (N, features...); got "
                            f"{type(x).__name__} {np.shape(x)}")
        if len(x) == 0:
            raise ValueError(f"{x_name} is empty")
        if not hasattr(t, "__len__") or len(t) != len(x):
            found = len(t) if hasattr(t, "__len__") else type(t).__name__
            raise ValueError(f"{x_name} has {len(x)} samples but {t_name} has {found}")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ValueError(f"x_test samples must have the shape of x_train's, {x_train.shape[1:]}; "
                         f"got {x_test.shape[1:]}")
    check = getattr(network, "_check_loss_arguments", None)  # a fastconv network's
    if check is not None:
        check(x_train, t_train)
        check(x_test, t_test)


RUN_CHECKPOINT = "trainer-{}.ckpt"  # the n-th Trainer's file in a run's folder
_RUN_CHECKPOINT_NAME = re.compile(r"trainer-[0-9]+\.ckpt")


def run_checkpoint_files(folder):
    """The names of the files in folder that a run's Trainers save to, sorted."""
    return sorted(name for name in os.listdir(folder) if _RUN_CHECKPOINT_NAME.fullmatch(name))


class _RunCheckpoints:
    """The checkpoints ``python -m fastconv --checkpoint DIR`` gives the script's Trainers:
    the n-th Trainer made without ``checkpoint=`` saves to DIR/trainer-<n>.ckpt, n counting
    from 1 in the order they are made, so the same command run again finds each its own."""

    def __init__(self):
        self.folder = None
        self.made = 0
        self.saved = 0  # the made ones that can be saved
        self.lock = threading.Lock()
        self.paused = threading.local()

    def next_path(self, savable):
        """The next Trainer's file, or None outside a run or while paused. One that cannot
        be saved takes its number all the same, so that the later ones keep theirs."""
        with self.lock:
            if self.folder is None or getattr(self.paused, "depth", 0):
                return None
            self.made += 1
            self.saved += bool(savable)
            return os.path.join(self.folder, RUN_CHECKPOINT.format(self.made))


_run_checkpoints = _RunCheckpoints()


def checkpoint_trainers_into(folder):
    """From now on in this process, a Trainer made without ``checkpoint=`` saves to and
    resumes from ``folder/trainer-<n>.ckpt`` (see ``_RunCheckpoints``); None stops it. A
    Trainer whose optimizer is not one of fastconv's cannot be saved and is left unsaved."""
    with _run_checkpoints.lock:
        _run_checkpoints.folder = None if folder is None else os.fspath(folder)
        _run_checkpoints.made = _run_checkpoints.saved = 0


def run_checkpoint_folder():
    """``checkpoint_trainers_into``'s folder, or None."""
    return _run_checkpoints.folder


def run_checkpoints_taken():
    """How many Trainers save to ``checkpoint_trainers_into``'s folder so far."""
    return _run_checkpoints.saved


@contextlib.contextmanager
def run_checkpoints_paused():
    """Trainers made in this thread inside the block take no run checkpoint and no number
    (the zero-change probes make Trainers the script does not)."""
    paused = _run_checkpoints.paused
    paused.depth = getattr(paused, "depth", 0) + 1
    try:
        yield
    finally:
        paused.depth -= 1


def _forget_run_checkpoints_in_child():
    # a forked worker's Trainers would take the parent's next numbers, and both would write
    # to the same files
    global _run_checkpoints
    _run_checkpoints = _RunCheckpoints()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_run_checkpoints_in_child)


class Trainer:
    """Trains ``network`` on (x_train, t_train), tracking accuracy on both sets per epoch."""

    def __init__(self, network, x_train, t_train, x_test, t_test,
                 epochs=20, mini_batch_size=100,
                 optimizer='SGD', optimizer_param={'lr': 0.01},
                 evaluate_sample_num_per_epoch=None, verbose=True, *,
                 seed=None, progress=None, log=print, checkpoint=None, checkpoint_every=None):
        self.network = network
        self.verbose = verbose
        self.x_train = x_train
        self.t_train = t_train
        self.x_test = x_test
        self.t_test = t_test
        self.epochs = check_int("epochs", epochs, 0)
        self.batch_size = check_int("mini_batch_size", mini_batch_size, 1)
        if evaluate_sample_num_per_epoch is not None:
            evaluate_sample_num_per_epoch = check_int("evaluate_sample_num_per_epoch",
                                                      evaluate_sample_num_per_epoch, 1)
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.optimizer = _make_optimizer(optimizer, optimizer_param)
        self.mode = _mode.get_mode()
        self.progress = (verbose and self.mode == "fast") if progress is None else progress
        self.log = log
        _check_data(network, x_train, t_train, x_test, t_test)
        self.train_size = x_train.shape[0]
        if seed is not None:
            seed = check_int("seed", seed, 0)
        # after every other check: a run's next checkpoint number is taken here, and a
        # Trainer that is refused must not take it
        self.checkpoint, self.checkpoint_every = self._checked_checkpoint(checkpoint,
                                                                          checkpoint_every)

        # last: a bad argument must not have reseeded np.random
        self.seed = seed
        self.rng = None
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            np.random.seed(seed)
        self.iter_per_epoch = max(math.ceil(self.train_size / self.batch_size), 1)
        self.max_iter = self.epochs * self.iter_per_epoch
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []
        self.epoch_time_list = []
        self.final_test_acc = None
        self.resumed_from = None  # the step a checkpoint put this Trainer at, if any
        self._epoch_time = 0.0
        self._epoch_steady = []  # (steady steps, their seconds) of each finished epoch
        self._epoch_steady_now = [0, 0.0]  # the same for the epoch under way
        self._clock = StepClock()
        self._bar = None
        self._in_step = False
        self._interrupted = False

    def _checked_checkpoint(self, path, every):
        # a run's file (python -m fastconv --checkpoint) is guarded by the lock of its folder
        self._run_file = False
        if path is None and every is None:
            savable = isinstance(self.optimizer, tuple(OPTIMIZERS.values()))
            path = _run_checkpoints.next_path(savable)
            if path is not None and not savable:
                # (stderr: the script's own output stays as in a plain run)
                print(f"fastconv: {path} not used: the Trainer's optimizer, "
                      f"{type(self.optimizer).__name__}, is not one of fastconv's, whose "
                      f"state a checkpoint can hold", file=sys.stderr)
                path = None
            self._run_file = path is not None
        if path is None:
            if every is not None:
                raise ValueError("checkpoint_every needs checkpoint=PATH")
            return None, None
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a file path (str or os.PathLike); got {path!r}")
        if not isinstance(self.optimizer, tuple(OPTIMIZERS.values())):
            raise TypeError("checkpoint= needs one of fastconv's optimizers (whose state it "
                            f"knows how to save); got {type(self.optimizer).__name__}")
        if every is not None:
            every = check_int("checkpoint_every", every, 1)
        return os.fspath(path), every

    # --- the figures the examples and the bar show ------------------------------------------

    @property
    def first_step_time(self):
        """Seconds of the first step this Trainer ran in this process (Numba compiles there)."""
        return self._clock.first_step_time

    @property
    def steady_images_per_sec(self):
        """Images/s over this process's steps after the first; None before the second step."""
        return self._clock.images_per_sec(self.batch_size)

    @property
    def eta(self):
        """Seconds left until ``max_iter``, or None while too few steps were timed to tell."""
        steps_left = self.max_iter - self.current_iter
        evaluations_left = math.ceil(self.max_iter / self.iter_per_epoch) - self.current_epoch
        return self._clock.eta(steps_left, evaluations_left)

    @property
    def images_per_sec_list(self):
        """Steady training throughput of each finished epoch (the compile step left out);
        NaN for an epoch whose only step was a compile step."""
        return [steps * self.batch_size / seconds if steps and seconds > 0 else float("nan")
                for steps, seconds in self._epoch_steady]

    def timing_summary(self):
        """One line: steps and epochs run, the first step's time apart, steady images/s."""
        clock = self._clock
        if clock.first_step_time is None:
            return "no training step run in this process"
        steps = 1 + clock.steady_steps
        epochs, part = divmod(steps, self.iter_per_epoch)
        if part == 0:
            epochs = plural(epochs, "epoch")
        else:
            epochs = f"{steps / self.iter_per_epoch:.1f} epochs"
        text = (f"{plural(steps, 'step')} ({epochs}) in "
                f"{format_duration(clock.first_step_time + clock.steady_time)}: first step "
                f"{format_duration(clock.first_step_time)} (includes compilation)")
        rate = self.steady_images_per_sec
        if rate is not None:
            text += f", then {rate:,.0f} images/s"
        return text

    # --- one step -----------------------------------------------------------------------------

    def _sample(self):
        if self.rng is None:
            return np.random.choice(self.train_size, self.batch_size)
        return self.rng.integers(0, self.train_size, size=self.batch_size)

    def _log(self, message):
        if self._bar is not None:
            with self._bar.external_write_mode():
                self.log(message)
        else:
            self.log(message)

    def train_step(self):
        """One mini-batch step; evaluates accuracy at the start of each epoch, like the book."""
        self._in_step = True
        start = time.perf_counter()
        # (a public attribute a script may replace: checked before the batch is drawn)
        _check_optimizer(self.optimizer, "Trainer.optimizer must be an object")
        batch_mask = self._sample()
        x_batch = self.x_train[batch_mask]
        t_batch = self.t_train[batch_mask]

        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = getattr(self.network, "last_loss", None)
        if self.mode == "parity" or loss is None:
            # the book's second forward pass, after the update: in DeepConvNet it draws
            # Dropout masks from np.random, which moves every later mini-batch
            loss = self.network.loss(x_batch, t_batch)
        seconds = time.perf_counter() - start
        self._epoch_time += seconds
        if self._clock.step(seconds):
            self._epoch_steady_now[0] += 1
            self._epoch_steady_now[1] += seconds
        # parity keeps the loss's own type, as the book appends it (np.float64 prints as
        # such in a notebook); fast mode stores plain floats
        self.train_loss_list.append(loss if self.mode == "parity" else float(loss))
        if self.verbose and self.mode == "parity":
            self._log("train loss:" + str(loss))

        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            self._evaluate()
        if (self.current_iter + 1) % self.iter_per_epoch == 0:
            self.epoch_time_list.append(self._epoch_time)
            self._epoch_steady.append(tuple(self._epoch_steady_now))
            self._epoch_time = 0.0
            self._epoch_steady_now = [0, 0.0]
        self.current_iter += 1
        self._in_step = False

    def _evaluate(self):
        start = time.perf_counter()
        x_train, t_train = self.x_train, self.t_train
        x_test, t_test = self.x_test, self.t_test
        n = self.evaluate_sample_num_per_epoch
        if n is not None:
            x_train, t_train = x_train[:n], t_train[:n]
            x_test, t_test = x_test[:n], t_test[:n]
        train_acc = self.network.accuracy(x_train, t_train)
        test_acc = self.network.accuracy(x_test, t_test)
        self.train_acc_list.append(train_acc)
        self.test_acc_list.append(test_acc)
        self._clock.evaluation(time.perf_counter() - start)
        if self.verbose:
            self._log("=== epoch:" + str(self.current_epoch) + ", train acc:" + str(train_acc)
                      + ", test acc:" + str(test_acc) + " ===")

    # --- the progress bar -------------------------------------------------------------------

    def _postfix(self):
        postfix = {"epoch": f"{self.current_epoch}/{self.epochs}",
                   "loss": f"{self.train_loss_list[-1]:.4f}",
                   "train_acc": f"{self.train_acc_list[-1]:.4f}",
                   "test_acc": f"{self.test_acc_list[-1]:.4f}"}
        if self.first_step_time is not None:
            postfix["first step"] = format_duration(self.first_step_time)
        rate = self.steady_images_per_sec
        if rate is not None:
            postfix["img/s"] = f"{rate:.0f}"
        eta = self.eta
        if eta is not None:
            postfix["eta"] = format_duration(eta)
        return postfix

    def _open_bar(self):
        if not self.progress or self.current_iter >= self.max_iter:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is a dependency, but training must not need it
            return None
        # no tqdm rate or remaining time: both would count the compile step; the postfix
        # carries the steady figures instead
        return tqdm(total=self.max_iter, initial=self.current_iter, desc="train", unit="step",
                    dynamic_ncols=True,
                    bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")

    # --- checkpoints --------------------------------------------------------------------------

    def save_checkpoint(self, path=None):
        """Write the training state to ``path`` (default: the ``checkpoint`` given), atomically.

        Call it between steps only: inside a step the parameters, the optimizer and the
        random generators disagree.
        """
        path = self.checkpoint if path is None else os.fspath(path)
        if path is None:
            raise ValueError("save_checkpoint needs a path: none was given to the Trainer")
        if self._in_step:
            raise RuntimeError("save_checkpoint was called in the middle of a step")
        _checkpoint.save(path, self)

    def load_checkpoint(self, path=None):
        """Put this Trainer in the state saved at ``path`` (default: ``checkpoint``).

        Raises :class:`fastconv.checkpoint.CheckpointError` naming what differs when the file
        was made for another network, optimizer or training set-up; nothing changes then.
        """
        path = self.checkpoint if path is None else os.fspath(path)
        if path is None:
            raise ValueError("load_checkpoint needs a path: none was given to the Trainer")
        _checkpoint.load(path, self)
        self.resumed_from = self.current_iter

    def _resume(self):
        """At the start of train(): continue from the checkpoint file if there is one.

        Returns True when it loaded one.
        """
        if self.checkpoint is None:
            return False
        if self.current_iter > 0:
            return False  # a Trainer that has run already is newer than any file it wrote
        remove_stale_temporaries(self.checkpoint)
        if not os.path.exists(self.checkpoint):
            return False
        self.load_checkpoint()
        if self.verbose:
            self._log(f"resumed from {self.checkpoint} at step {self.current_iter} of "
                      f"{self.max_iter} (epoch {self.current_epoch} of {self.epochs})")
        return True

    def _checkpoint_due(self):
        step = self.current_iter
        if step % self.iter_per_epoch == 0 or step == self.max_iter:
            return True
        return self.checkpoint_every is not None and step % self.checkpoint_every == 0

    @contextlib.contextmanager
    def _interrupts_between_steps(self):
        """Hold a Ctrl-C until the step under way is over, so the checkpoint is consistent.

        A second Ctrl-C interrupts at once. Only with a checkpoint, in the main thread, and
        when SIGINT has Python's default handler (a program's own handler is left alone).
        """
        if (self.checkpoint is None
                or threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return

        def hold(signum, frame):
            if self._interrupted or not self._in_step:
                raise KeyboardInterrupt
            self._interrupted = True

        self._interrupted = False
        signal.signal(signal.SIGINT, hold)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    # --- the loop -----------------------------------------------------------------------------

    def train(self):
        """Train until ``max_iter`` steps in all, then report the accuracy on the test set.

        With ``checkpoint``: resume from the file if it exists, save at every epoch's end (and
        every ``checkpoint_every`` steps), and save at Ctrl-C before re-raising it.
        """
        with self._checkpoint_held():
            self._train()

    @contextlib.contextmanager
    def _checkpoint_held(self):
        """The checkpoint file's lock, for the whole run: two runs that shared the file would
        remove each other's temporary files and resume from each other's saves."""
        if self.checkpoint is None or self._run_file:
            yield
            return
        # the real path, as open() resolves it: "link/../x" is x beside the link's target
        folder = os.path.dirname(os.path.realpath(self.checkpoint))
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"checkpoint folder {folder!r} does not exist; create it "
                                    "or give checkpoint= another path")
        lock = lock_file_for(self.checkpoint)
        try:
            fd = hold_lock(lock, f"checkpoint {self.checkpoint!r}")
        except LockedError:
            raise _checkpoint.CheckpointError(
                f"checkpoint {self.checkpoint!r} is in use by another training run (another "
                f"process, or a Trainer of this one, is training with it): two runs must not "
                f"share a checkpoint file") from None
        try:
            yield
        finally:
            release_lock(lock, fd)

    def _train(self):
        self._in_step = False  # a step that raised earlier is over
        resumed = self._resume()
        if self.current_iter >= self.max_iter and not resumed and self.verbose:
            self._log(f"training already ran its {plural(self.max_iter, 'step')}; raise "
                      "max_iter to train on")
        self._bar = self._open_bar()
        try:
            with self._interrupts_between_steps():
                while self.current_iter < self.max_iter:
                    self.train_step()
                    if self.checkpoint is not None and (self._interrupted
                                                        or self._checkpoint_due()):
                        self.save_checkpoint()
                    if self._interrupted:
                        raise KeyboardInterrupt
                    if self._bar is not None:
                        self._bar.set_postfix(self._postfix(), refresh=False)
                        self._bar.update(1)
        except KeyboardInterrupt:
            self._after_interrupt()
            raise
        finally:
            if self._bar is not None:
                self._bar.close()
            self._bar = None

        test_acc = self.network.accuracy(self.x_test, self.t_test)
        self.final_test_acc = test_acc
        if self.verbose:
            self.log("=============== Final Test Accuracy ===============")
            self.log("test acc:" + str(test_acc))
            if self.mode == "fast" and self._clock.first_step_time is not None:
                self.log(self.timing_summary())

    def _after_interrupt(self):
        """On Ctrl-C: save if the state is whole, and say where the run can resume."""
        if self.checkpoint is None:
            return
        if self._in_step:  # stopped inside a step: the file keeps the last whole step
            self._in_step = False
            message = (f"interrupted inside step {self.current_iter + 1}; {self.checkpoint} "
                       "keeps the last checkpoint")
        else:
            if not self._interrupted:  # between steps, not yet saved
                self.save_checkpoint()
            message = f"interrupted: saved step {self.current_iter} to {self.checkpoint}"
        if self.verbose:
            self._log(message + "; run the same command again to resume")
