"""Drop-in for the book's ``common/trainer.py``: mini-batch training with per-epoch accuracy.

Same constructor, attributes (``train_loss_list``, ``train_acc_list``, ``test_acc_list``,
``iter_per_epoch``, ``max_iter``, ``current_iter``, ``current_epoch``, ``batch_size``,
``optimizer``, ...) and methods (``train_step``, ``train``) as the book. Differences:

* One forward pass per step. The loss recorded in ``train_loss_list`` is the one
  ``network.gradient`` computed (its ``last_loss``), i.e. the mini-batch loss in training mode
  BEFORE the update; the book runs ``network.loss`` again AFTER the update. A network without
  ``last_loss`` (not from fastconv) falls back to the book's extra ``network.loss`` call.
* Epochs: ``iter_per_epoch = max(ceil(train_size / mini_batch_size), 1)``, an integer, and
  ``max_iter = epochs * iter_per_epoch``. Accuracy is evaluated, and ``current_epoch``
  counted, after the steps at iterations 0, iter_per_epoch, 2*iter_per_epoch, ... exactly like
  the book (so each list of accuracies has ``epochs`` entries); the book's float
  ``train_size / mini_batch_size`` never divides ``current_iter`` evenly when the training set
  is not a multiple of the batch size, and then evaluates only once.
* Batches are drawn with replacement, like the book. ``seed=None``: from ``np.random``
  exactly as the book does (``np.random.choice``), so ``np.random.seed`` controls it.
  ``seed=<int>``: from ``np.random.default_rng(seed)``, and ``np.random.seed(seed)`` is called
  too, since Dropout draws its masks from ``np.random``; two runs with the same seed are then
  identical.
* ``progress`` (default: on when ``verbose``): a tqdm bar showing epoch, loss, train/test
  accuracy and images/s, instead of the book's print of every step's loss. The per-epoch
  accuracy line and the final test accuracy are still printed when ``verbose``, through
  ``log`` (default ``print``).
* ``epoch_time_list``: wall time of each epoch's training steps (sampling, gradient, update;
  the accuracy evaluation excluded); ``images_per_sec_list`` derives the throughput.
* ``optimizer`` is a name (case-insensitive, as in the book) or an optimizer instance (then
  ``optimizer_param`` is ignored). The final test accuracy is kept in ``final_test_acc``.
"""
import math
import time

import numpy as np

from fastconv.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = ["Trainer"]

OPTIMIZERS = {'sgd': SGD, 'momentum': Momentum, 'nesterov': Nesterov,
              'adagrad': AdaGrad, 'rmsprop': RMSprop, 'adam': Adam}


def _make_optimizer(optimizer, optimizer_param):
    if isinstance(optimizer, str):
        try:
            cls = OPTIMIZERS[optimizer.lower()]
        except KeyError:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of "
                             f"{sorted(OPTIMIZERS)} or pass an optimizer instance") from None
        return cls(**(optimizer_param or {}))
    if not callable(getattr(optimizer, "update", None)):
        raise TypeError("optimizer must be a name or an object with update(params, grads); "
                        f"got {optimizer!r}")
    return optimizer


def _positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


class Trainer:
    """Trains ``network`` on (x_train, t_train), tracking accuracy on both sets per epoch."""

    def __init__(self, network, x_train, t_train, x_test, t_test,
                 epochs=20, mini_batch_size=100,
                 optimizer='SGD', optimizer_param={'lr': 0.01},
                 evaluate_sample_num_per_epoch=None, verbose=True, *,
                 seed=None, progress=None, log=print):
        self.network = network
        self.verbose = verbose
        self.x_train = x_train
        self.t_train = t_train
        self.x_test = x_test
        self.t_test = t_test
        self.epochs = _positive_int("epochs", epochs, 0)
        self.batch_size = _positive_int("mini_batch_size", mini_batch_size)
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.optimizer = _make_optimizer(optimizer, optimizer_param)
        self.progress = verbose if progress is None else progress
        self.log = log

        self.seed = seed
        self.rng = None
        if seed is not None:
            self.rng = np.random.default_rng(seed)
            np.random.seed(seed)

        self.train_size = x_train.shape[0]
        if self.train_size == 0:
            raise ValueError("x_train is empty")
        if len(t_train) != self.train_size:
            raise ValueError(f"x_train has {self.train_size} samples but t_train has "
                             f"{len(t_train)}")
        self.iter_per_epoch = max(math.ceil(self.train_size / self.batch_size), 1)
        self.max_iter = self.epochs * self.iter_per_epoch
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list = []
        self.train_acc_list = []
        self.test_acc_list = []
        self.epoch_time_list = []
        self.final_test_acc = None
        self._epoch_time = 0.0
        self._bar = None

    @property
    def images_per_sec_list(self):
        """Training throughput of each finished epoch, from ``epoch_time_list``."""
        images = self.iter_per_epoch * self.batch_size
        return [images / t if t > 0 else float("inf") for t in self.epoch_time_list]

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
        start = time.perf_counter()
        batch_mask = self._sample()
        x_batch = self.x_train[batch_mask]
        t_batch = self.t_train[batch_mask]

        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = getattr(self.network, "last_loss", None)
        if loss is None:  # not a fastconv network: the book's second forward pass
            loss = self.network.loss(x_batch, t_batch)
        self._epoch_time += time.perf_counter() - start
        self.train_loss_list.append(float(loss))

        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            self._evaluate()
        if (self.current_iter + 1) % self.iter_per_epoch == 0:
            self.epoch_time_list.append(self._epoch_time)
            self._epoch_time = 0.0
        self.current_iter += 1

    def _evaluate(self):
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
        if self.verbose:
            self._log(f"=== epoch:{self.current_epoch}, train acc:{train_acc}, "
                      f"test acc:{test_acc} ===")

    def _postfix(self):
        done = self.current_iter % self.iter_per_epoch  # steps into the current epoch
        if done and self._epoch_time > 0:
            rate = done * self.batch_size / self._epoch_time
        elif self.epoch_time_list:
            rate = self.images_per_sec_list[-1]
        else:
            rate = 0.0
        return {"epoch": self.current_epoch,
                "loss": f"{self.train_loss_list[-1]:.4f}",
                "train_acc": f"{self.train_acc_list[-1]:.4f}",
                "test_acc": f"{self.test_acc_list[-1]:.4f}",
                "img/s": f"{rate:.0f}"}

    def _open_bar(self):
        if not self.progress or self.max_iter == 0:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is a dependency, but training must not need it
            return None
        return tqdm(total=self.max_iter, desc="train", unit="it", dynamic_ncols=True)

    def train(self):
        """Run ``max_iter`` steps, then report the accuracy on the whole test set."""
        self._bar = self._open_bar()
        try:
            for _ in range(self.max_iter):
                self.train_step()
                if self._bar is not None:
                    self._bar.set_postfix(self._postfix(), refresh=False)
                    self._bar.update(1)
        finally:
            if self._bar is not None:
                self._bar.close()
            self._bar = None

        test_acc = self.network.accuracy(self.x_test, self.t_test)
        self.final_test_acc = test_acc
        if self.verbose:
            self.log("=============== Final Test Accuracy ===============")
            self.log("test acc:" + str(test_acc))
