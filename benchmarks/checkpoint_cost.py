"""What a checkpoint after every step costs: SimpleConvNet steps with and without one.

Two Trainers on the same random MNIST-shaped data, one saving after every step; they run
alternating blocks of steps in one process, and the ratio of their median block times is
printed, with the time of one save on its own.

    python benchmarks/checkpoint_cost.py [--blocks 8] [--steps 10] [--mode parity|fast]
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import fastconv
from fastconv.simple_convnet import SimpleConvNet
from fastconv.trainer import Trainer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--mode", choices=fastconv.mode.MODES, default="parity")
    args = parser.parse_args()
    fastconv.set_mode(args.mode)
    rng = np.random.default_rng(0)
    x = rng.random((1000, 1, 28, 28))
    t = rng.integers(0, 10, 1000)
    folder = tempfile.mkdtemp()
    trainers = {}
    for name, path in (("plain", None), ("checkpoint every step", os.path.join(folder, "c"))):
        np.random.seed(0)
        trainers[name] = Trainer(SimpleConvNet(), x, t, x[:100], t[:100], epochs=1000,
                                 mini_batch_size=100, optimizer="Adam", verbose=False,
                                 checkpoint=path, checkpoint_every=1 if path else None)
    times = {name: [] for name in trainers}
    for block in range(args.blocks + 1):  # the first block compiles: not counted
        for name, trainer in trainers.items():
            trainer.max_iter = trainer.current_iter + args.steps
            start = time.perf_counter()
            trainer.train()
            if block:
                times[name].append(time.perf_counter() - start)
    saver = trainers["checkpoint every step"]
    saves = []
    for _ in range(10):
        start = time.perf_counter()
        saver.save_checkpoint()
        saves.append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    saving = statistics.median(times["checkpoint every step"])
    print(f"mode {args.mode}; median block of {args.steps} steps: plain {plain * 1e3:.1f} ms, "
          f"with a checkpoint after every step {saving * 1e3:.1f} ms, ratio {saving / plain:.3f}")
    print(f"one save ({os.path.getsize(saver.checkpoint) / 1e6:.2f} MB): median "
          f"{statistics.median(saves) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
