"""Hyperparameter sweeps: many independent trainings, serially or on a Dask cluster.

    from fastconv.sweep import run_sweep, LogUniform

    def train(hyperparameters, seed):
        ...  # build a network, train it with the Trainer(seed=seed)
        return {"val_acc": ..., "train_acc": ...}

    records = run_sweep(train, {"weight_decay": LogUniform(1e-8, 1e-4),
                                "lr": LogUniform(1e-6, 1e-2)},
                        n_trials=100, seed=0, results="sweep.jsonl", metric="val_acc")

``samplers`` decides what each trial gets (random, grid, Optuna's TPE); ``results`` keeps the
JSON Lines file; ``runner`` runs the trials and streams their results. See docs/cluster.md.
"""
from fastconv.sweep.results import read_results
from fastconv.sweep.runner import checkpoint_path, run_sweep, run_trial
from fastconv.sweep.samplers import (SAMPLERS, Choice, GridSampler, LogUniform, OptunaSampler,
                                     RandomSampler, Uniform, trial_seed)

__all__ = ["run_sweep", "run_trial", "read_results", "checkpoint_path", "LogUniform",
           "Uniform", "Choice", "RandomSampler", "GridSampler", "OptunaSampler", "SAMPLERS",
           "trial_seed"]
