"""Training functions for tests/test_sweep.py, importable by Dask workers and subprocesses.

A tiny, learnable problem: 240 synthetic 32-feature samples whose class (of 4) is the argmax
of a fixed linear map, a TwoLayerNet trained for a few epochs by the Trainer; well under a
second per trial.
"""
import os
import signal
import sys

import numpy as np

from fastconv.nets.two_layer_net import TwoLayerNet
from fastconv.trainer import Trainer

FEATURES, CLASSES = 32, 4


def tiny_data():
    rng = np.random.default_rng(1234)  # the data never changes; only the trial's seed does
    x = rng.standard_normal((240, FEATURES))
    t = np.argmax(x @ rng.standard_normal((FEATURES, CLASSES)), axis=1)
    return x[:200], t[:200], x[200:], t[200:]


def train_tiny(hyperparameters, seed, checkpoint=None):
    x_train, t_train, x_val, t_val = tiny_data()
    np.random.seed(seed)  # the network's initial weights come from np.random
    network = TwoLayerNet(FEATURES, 16, CLASSES, dtype=np.float64)
    trainer = Trainer(network, x_train, t_train, x_val, t_val, epochs=3, mini_batch_size=50,
                      optimizer="sgd", optimizer_param={"lr": hyperparameters["lr"]},
                      verbose=False, seed=seed)
    trainer.train()
    return {"val_acc": trainer.test_acc_list[-1], "train_acc": trainer.train_acc_list[-1],
            "loss": trainer.train_loss_list[-1], "val_acc_list": trainer.test_acc_list}


def _mark(folder, name):
    """Create ``folder/name`` if it does not exist; True when this call created it."""
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


class KillsItsProcessOnce:
    """``train_tiny``, except that the first run of the trial with seed ``victim_seed`` kills
    its own process with SIGKILL half-way (after training, before returning); a marker file
    in ``folder`` tells the first run from the rescheduled one. Every run of every trial also
    leaves a marker ``started-<seed>-...``, so a test can count the runs."""

    def __init__(self, folder, victim_seed):
        self.folder, self.victim_seed = os.fspath(folder), victim_seed

    def __call__(self, hyperparameters, seed, checkpoint=None):
        _mark(self.folder, f"started-{seed}-{os.getpid()}-{os.urandom(4).hex()}")
        metrics = train_tiny(hyperparameters, seed)
        if seed == self.victim_seed and _mark(self.folder, "killed"):
            os.kill(os.getpid(), signal.SIGKILL)
        return metrics


def runs_per_seed(folder):
    """How many times each seed's trial started, from KillsItsProcessOnce's markers."""
    counts = {}
    for name in os.listdir(folder):
        if name.startswith("started-"):
            seed = int(name.split("-")[1])
            counts[seed] = counts.get(seed, 0) + 1
    return counts


def raises_on_large_lr(hyperparameters, seed, checkpoint=None):
    if hyperparameters["lr"] > 0.1:
        raise FloatingPointError(f"lr {hyperparameters['lr']:.3g} diverges")
    return train_tiny(hyperparameters, seed)


def exits_on_large_lr(hyperparameters, seed, checkpoint=None):
    if hyperparameters["lr"] > 0.1:
        sys.exit(3)
    return train_tiny(hyperparameters, seed)


def main(argv):
    """``python sweep_trials.py JSON``: run one sweep as its own driver process (the tests
    kill it, or its workers, and time it out). JSON: train ("tiny", "raises", "exits" or
    "kills"), n_trials, seed, workers, results, and for "kills" folder and victim_seed."""
    import json

    from fastconv.sweep import LogUniform, run_sweep
    options = json.loads(argv[1])
    train = {"tiny": train_tiny, "raises": raises_on_large_lr,
             "exits": exits_on_large_lr}.get(options["train"])
    if options["train"] == "kills":
        train = KillsItsProcessOnce(options["folder"], options["victim_seed"])
    run_sweep(train, {"lr": LogUniform(0.01, 1.0)}, options["n_trials"], options["seed"],
              workers=options["workers"], results=options["results"], metric="val_acc",
              progress=False)


if __name__ == "__main__":
    import sweep_trials  # by name, so that Dask pickles its functions by reference
    sweep_trials.main(sys.argv)
