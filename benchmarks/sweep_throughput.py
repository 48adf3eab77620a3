"""Sweep throughput (trials/min) on this machine, and the per-trial cost of Dask.

Not an asv benchmark: it starts clusters and runs for minutes. Four ways to run the same
sweep of the book's ch06 trial (MultiLayerNet 784-100x6-10, SGD, batch 100, 400 training and
100 validation MNIST images, --epochs epochs), interleaved round by round so that a noisy
spell on a shared machine hits every case alike:

    serial-1t   --workers 0, fastconv on 1 thread      (numba.set_num_threads(1))
    serial-2t   --workers 0, fastconv on 2 threads     (this process, the default)
    dask-2x1    a LocalCluster of 2 worker processes, 1 thread each (run_sweep's default here)
    dask-1x2    a LocalCluster of 1 worker process, fastconv on 2 threads

Then the per-trial overhead: trials that return at once, serially and on the 2-worker cluster,
with and without a results file (one fsync per trial). Cluster start-up is timed apart.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE FASTCONV_DATA=/path/to/data \\
        python benchmarks/sweep_throughput.py --trials 8 --epochs 10 --rounds 2
"""
import argparse
import functools
import os
import tempfile
import time

import numba
import numpy as np

from fastconv.datasets import load_mnist
from fastconv.multi_layer_net import MultiLayerNet
from fastconv.sweep import LogUniform, run_sweep
from fastconv.sweep.runner import start_local_cluster
from fastconv.trainer import Trainer

SPACE = {"weight_decay": LogUniform(1e-8, 1e-4), "lr": LogUniform(1e-6, 1e-2)}


def ch06_trial(hyperparameters, seed, *, data, epochs):
    x_train, t_train, x_val, t_val = data
    np.random.seed(seed)
    network = MultiLayerNet(784, [100] * 6, 10,
                            weight_decay_lambda=hyperparameters["weight_decay"])
    trainer = Trainer(network, x_train, t_train, x_val, t_val, epochs=epochs,
                      mini_batch_size=100, optimizer="sgd",
                      optimizer_param={"lr": hyperparameters["lr"]}, verbose=False, seed=seed)
    trainer.train()
    return {"val_acc": trainer.final_test_acc}


def no_op_trial(hyperparameters, seed):
    return {"val_acc": 0.0}


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-op-trials", type=int, default=200)
    args = parser.parse_args()

    (x, t), _ = load_mnist(normalize=True)
    data = (x[100:500], t[100:500], x[:100], t[:100])
    train = functools.partial(ch06_trial, data=data, epochs=args.epochs)

    startup = {}
    clients, threads_of = {}, {"dask-2x1": 1, "dask-1x2": 2}
    for name, workers in (("dask-2x1", 2), ("dask-1x2", 1)):
        start = time.perf_counter()
        clients[name] = start_local_cluster(workers, threads_of[name])[0]
        startup[name] = time.perf_counter() - start
        # warm-up: every worker imports fastconv and loads the compiled kernels once
        run_sweep(train, SPACE, 2 * workers, 999, client=clients[name],
                  worker_threads=threads_of[name], progress=False)
        startup[name + " +warm-up"] = time.perf_counter() - start
    for name, seconds in startup.items():
        print(f"start-up {name}: {seconds:.1f} s")

    def serial(threads):
        def run(seed):
            before = numba.get_num_threads()
            numba.set_num_threads(threads)
            try:
                run_sweep(train, SPACE, args.trials, seed, workers=0, progress=False)
            finally:
                numba.set_num_threads(before)
        return run

    cases = {"serial-1t": serial(1), "serial-2t": serial(2)}
    for name, client in clients.items():
        cases[name] = functools.partial(
            lambda seed, client, threads: run_sweep(train, SPACE, args.trials, seed,
                                                    client=client, worker_threads=threads,
                                                    progress=False),
            client=client, threads=threads_of[name])
    serial(2)(998)  # warm-up in this process
    times = {name: [] for name in cases}
    for round_ in range(args.rounds):
        for name, case in cases.items():
            times[name].append(timed(lambda: case(round_)))
            print(f"round {round_}: {name}: {args.trials} trials in {times[name][-1]:.1f} s",
                  flush=True)
    base = sum(times["serial-2t"])
    print(f"\n{args.trials} trials x {args.rounds} rounds, {args.epochs} epochs each")
    for name, values in times.items():
        total = sum(values)
        print(f"{name:10s} {60 * args.trials * args.rounds / total:6.1f} trials/min   "
              f"time vs serial-2t {total / base:.2f}x   (rounds: "
              + ", ".join(f"{v:.1f} s" for v in values) + ")")

    n = args.no_op_trials
    with tempfile.TemporaryDirectory() as folder:
        overhead = {}
        for name, kwargs in (("serial", {"workers": 0}),
                             ("dask-2x1", {"client": clients["dask-2x1"]})):
            for label, results in (("no file", None), ("file", "r")):
                path = None if results is None else os.path.join(folder, f"{name}.jsonl")
                seconds = timed(lambda: run_sweep(no_op_trial, SPACE, n, 0, results=path,
                                                  progress=False, **kwargs))
                overhead[f"{name}, {label}"] = seconds / n
    for name, seconds in overhead.items():
        print(f"per-trial overhead {name:18s} {1000 * seconds:7.2f} ms "
              f"({n} no-op trials)")
    for client in clients.values():
        client.close()


if __name__ == "__main__":
    main()
