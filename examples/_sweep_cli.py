"""The options of the sweep examples, and the call that runs a sweep from them.

    --trials N          number of trials
    --workers N         a local Dask cluster of N worker processes (one thread each);
                        0 (default): serially in this process, without Dask
    --scheduler ADDR    an existing Dask cluster's scheduler (tcp://host:8786) instead
    --results FILE      JSON Lines, one object per finished trial; an existing file resumes
    --sampler NAME      random (default), grid or tpe (Optuna)
    --checkpoint-dir D  a folder every worker can reach: each trial's Trainer checkpoint
    --seed N            the base seed (the examples' --seed: 0 to 2**32 - 1)

The training functions stay in the scripts themselves: Dask sends a function defined in the
script being run by value, so workers on other machines need fastconv, not the examples.
"""
import argparse
import sys
import time

from fastconv.sweep import SAMPLERS, read_results, run_sweep


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {text}")
    return value


def add_sweep_options(parser, positive_int):
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


def run(args, train, space, metric="val_acc", settings=None):
    """Run the sweep the options describe; (records sorted by trial, wall seconds, the records
    of the trials run now, not loaded from --results).

    ``settings``: the options that shape a trial, as {"--epochs": 50, ...}, which ``train``
    returns as its result "settings"; a --results file whose trials were run with others is
    refused, naming the option (its trials would be mixed with these)."""
    earlier = _earlier_trials(args, settings or {})
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
        # an OSError names the results file or checkpoint folder, or the unreachable scheduler
        _usage_error(error)
    fresh = [record for record in records if record["trial"] not in earlier]
    return records, time.perf_counter() - start, fresh


def _usage_error(message):
    """End as argparse does for a usage error: the message and exit status 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _earlier_trials(args, settings):
    """The trials --results holds; refuse a file whose trials ran with other settings."""
    if args.results is None:
        return set()
    try:
        finished, _ = read_results(args.results)
    except (ValueError, OSError):
        return set()  # run_sweep says what is wrong with the file
    for record in finished.values():
        recorded = record.get("settings", {})  # a failed trial's record has none
        for name, value in settings.items():
            if name in recorded and recorded[name] != value:
                _usage_error(f"{args.results} holds trials run with {name} {recorded[name]}, "
                             f"not {value} as now; give the same options or another --results "
                             f"file")
    return set(finished)
