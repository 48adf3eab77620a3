"""The options of the sweep examples, and the call that runs a sweep from them.

    --trials N          number of trials
    --workers N         a local Dask cluster of N worker processes (one thread each);
                        0 (default): serially in this process, without Dask
    --scheduler ADDR    an existing Dask cluster's scheduler (tcp://host:8786) instead
    --results FILE      JSON Lines, one object per finished trial; an existing file resumes
    --sampler NAME      random (default), grid or tpe (Optuna)
    --checkpoint-dir D  a folder every worker can reach: each trial's Trainer checkpoint
    --seed N            the base seed, 0 to 2**32 - 1

The training functions stay in the scripts themselves: Dask sends a function defined in the
script being run by value, so workers on other machines need fastconv, not the examples.
"""
import argparse
import sys
import time

from fastconv.sweep import SAMPLERS, run_sweep


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def base_seed(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 32:  # what np.random.seed takes
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to 2**32 - 1, got {text}")
    return value


def add_sweep_options(parser, positive_int):
    for action in parser._actions:  # the shared --seed is the sweep's base seed here
        if action.dest == "seed":
            action.type = base_seed
    parser.add_argument("--trials", type=positive_int, default=None, help="number of trials")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=non_negative_int, default=0,
                       help="a local Dask cluster of N worker processes, one thread each "
                            "(default: 0, serially in this process without Dask)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on an existing Dask cluster (e.g. tcp://host:8786)")
    parser.add_argument("--results", default=None, metavar="FILE",
                        help="JSON Lines results file; an existing file resumes the sweep")
    parser.add_argument("--sampler", choices=SAMPLERS, default="random",
                        help="random (default), grid, or tpe (Optuna)")
    parser.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="shared folder for each trial's Trainer checkpoint, so a trial "
                             "whose worker died resumes instead of starting over")


def run(args, train, space, metric="val_acc"):
    """Run the sweep the options describe; (records sorted by trial, wall seconds)."""
    where = (f"scheduler {args.scheduler}" if args.scheduler else
             f"{args.workers} local worker processes" if args.workers else "this process")
    print(f"sweep: {args.trials} trials, sampler={args.sampler}, base seed {args.seed}, "
          f"on {where}" + (f", results in {args.results}" if args.results else ""))
    start = time.perf_counter()
    try:
        records = run_sweep(train, space, args.trials, args.seed, sampler=args.sampler,
                            results=args.results,
                            workers=None if args.scheduler else args.workers,
                            client=args.scheduler, checkpoint_dir=args.checkpoint_dir,
                            metric=metric)
    except (ValueError, TypeError, OSError, ImportError) as error:
        # a usage error (as argparse's: message and exit status 2), not a traceback; an
        # OSError names the results file or checkpoint folder, or the unreachable scheduler
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    return records, time.perf_counter() - start
