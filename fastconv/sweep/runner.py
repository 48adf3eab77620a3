"""Running a sweep: serially in this process or as Dask tasks, every result kept on disk.

The driver (the process that calls :func:`run_sweep`) asks the sampler for each trial's
hyperparameters, hands the trial to an executor, and appends each result to the results file
as it arrives. Workers only run ``train``; they never touch the file, so one process writes it.
"""
import contextlib
import hashlib
import json
import math
import numbers
import os
import time
import warnings

from fastconv.sweep.results import ResultsFile, plain, to_json_line
from fastconv.sweep.scheduler_probe import check_scheduler_answers
from fastconv.sweep.samplers import RESERVED, check_count, check_seed, make_sampler, trial_seed

__all__ = ["run_sweep", "run_trial", "start_local_cluster"]

GOALS = ("max", "min")


def checkpoint_path(folder, trial, seed, params):
    """The checkpoint file that trial ``trial`` (its seed, its hyperparameters) is given in
    the shared checkpoint folder: ``trial-000007-<hash>.ckpt``. The hash of the seed and the
    hyperparameters keeps another sweep's files in a reused folder (another base seed or
    space) from being taken for this trial's."""
    digest = hashlib.sha256(to_json_line({"seed": seed, **params}).encode()).hexdigest()
    return os.path.join(os.fspath(folder), f"trial-{trial:06d}-{digest[:12]}.ckpt")


def run_trial(train, trial, seed, params, checkpoint=None, threads=None):
    """Run one trial and return its record; an exception in ``train`` becomes the record's
    ``error`` ("Type: message") instead of propagating, so the sweep goes on.

    ``threads``: fastconv's thread count for this trial (Numba's setting is per thread, so
    this pins the worker thread running it on any cluster, whatever its environment)."""
    if threads is None:
        return _run_trial(train, trial, seed, params, checkpoint)
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        return _run_trial(train, trial, seed, params, checkpoint)
    finally:
        numba.set_num_threads(before)


def new_record(trial, seed, params):
    """A trial's record before its results: its number, seed, hyperparameters' names and
    values."""
    return {"trial": trial, "seed": seed, "hyperparameters": list(params), **params}


def _run_trial(train, trial, seed, params, checkpoint):
    record = new_record(trial, seed, params)
    try:
        kwargs = {} if checkpoint is None else {"checkpoint": checkpoint}
        metrics = train(dict(params), seed, **kwargs)
        if not isinstance(metrics, dict):
            raise TypeError(f"the training function must return a dict of metrics; "
                            f"got {type(metrics).__name__}")
        clashes = sorted(set(map(str, metrics)) & set(record) | {"error"} & set(metrics))
        if clashes:
            raise ValueError(f"the training function returned the reserved or hyperparameter "
                             f"names {clashes}")
        line = to_json_line({**record, **plain(metrics)})  # fails on values JSON cannot hold
    # SystemExit too: else serially it would end the driver, on Dask kill the worker
    except (Exception, SystemExit) as error:  # noqa: BLE001 -- any failure of the user's code
        line = to_json_line({**record, "error": f"{type(error).__name__}: {error}"})
    return json.loads(line)  # exactly what the file will hold, floats bit for bit


def _check_arguments(train, n_trials, goal, metric, workers, worker_threads, client,
                     checkpoint_dir, results, connect_timeout):
    if not callable(train):
        raise TypeError(f"train must be a function (hyperparameters, seed) -> dict of metrics; "
                        f"got {train!r}")
    check_count("n_trials", n_trials)
    if goal not in GOALS:
        raise ValueError(f"goal must be one of {GOALS}; got {goal!r}")
    if metric is not None and not isinstance(metric, str):
        raise TypeError(f"metric must be the name of a result (a string) or None; got {metric!r}")
    for name, value, minimum in (("workers", workers, 0), ("worker_threads", worker_threads, 1)):
        if value is not None:
            check_count(name, value, minimum)
    if workers is not None and client is not None:
        raise ValueError("give workers= (a local cluster, 0 for serial) or client= (a Dask "
                         "client or scheduler address), not both")
    for name, path in (("checkpoint_dir", checkpoint_dir), ("results", results)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{name} must be a path (a str or os.PathLike) or None; "
                            f"got {path!r}")
    if (isinstance(connect_timeout, bool) or not isinstance(connect_timeout, numbers.Real)
            or not math.isfinite(connect_timeout) or connect_timeout <= 0):
        raise ValueError(f"connect_timeout must be a positive finite number of seconds; got "
                         f"{connect_timeout!r}")
    if workers != 0 or client is not None:
        _check_picklable(train)


def _check_picklable(train):
    """Dask sends ``train`` to the workers with cloudpickle: refuse one that cannot go."""
    try:
        import cloudpickle
    except ImportError:  # no Dask either: its ImportError comes when the sweep starts it
        return
    try:
        cloudpickle.dumps(train)
    except Exception as error:  # noqa: BLE001 -- pickling can fail in many ways
        raise TypeError(f"train cannot be sent to Dask workers ({type(error).__name__}: "
                        f"{error}); make it picklable, or give workers=0 to run serially"
                        ) from None


def _verify_finished(sampler, finished, n_trials, base_seed, path):
    """Check that the results file's trials are this sweep's (same hyperparameters and seed).

    An Optuna sampler replays its history here as far as the file allows."""
    names = sorted(sampler.space)
    for trial, recorded in sorted(finished.items()):
        # (files written before records named their hyperparameters have no such list)
        listed = recorded.get("hyperparameters", names)
        if not isinstance(listed, list) or sorted(map(str, listed)) != names:
            raise ValueError(
                f"results file {path} was written by another sweep: trial {trial} has the "
                f"hyperparameters {listed!r} where this sweep's space has {names} (give "
                f"another file)")
    for trial in range(n_trials):
        if trial not in finished:
            if sampler.sequential:
                return  # later trials depend on this one's result
            continue
        if not sampler.can_ask(trial, finished):
            return
        expected = {"seed": trial_seed(base_seed, trial), **sampler.params(trial, finished)}
        recorded = finished[trial]
        for key, value in expected.items():
            if key not in recorded or recorded[key] != value:
                raise ValueError(
                    f"results file {path} was written by another sweep: trial {trial} has "
                    f"{key}={recorded.get(key)!r} where this sweep gives {value!r} (same "
                    f"space, seed and sampler are needed to resume; give another file)")


class _Serial:
    """Runs each trial in this process when the driver asks for its result."""

    limit = 1

    def __init__(self, train):
        self.train = train
        self.queue = []

    def submit(self, trial, seed, params, checkpoint):
        self.queue.append((trial, seed, params, checkpoint))

    def next_result(self):
        return run_trial(self.train, *self.queue.pop(0))

    def close(self):
        pass


class _Dask:
    """Runs trials as Dask tasks; results come back in completion order.

    At most twice as many trials as the cluster has threads are submitted at a time (re-read
    at most once a second, so a cluster that grows gets used), and never more than the
    sampler's limit: each task carries the training function and whatever data it holds.
    """

    def __init__(self, train, client, owned, sampler_limit, threads):
        from distributed import as_completed
        self.train, self.client, self.owned = train, client, owned
        self.threads = threads
        self.sampler_limit = sampler_limit
        self.futures = {}
        self.done = as_completed()
        self._threads, self._read_at = 0, -1.0

    @property
    def limit(self):
        if time.monotonic() - self._read_at > 1.0:
            self._threads = sum(self.client.nthreads().values())
            self._read_at = time.monotonic()
        return min(self.sampler_limit, max(2 * self._threads, 2))

    def submit(self, trial, seed, params, checkpoint):
        key = f"fastconv-trial-{trial}-{os.urandom(4).hex()}"
        future = self.client.submit(run_trial, self.train, trial, seed, params, checkpoint,
                                    self.threads, pure=False, key=key)
        self.futures[future.key] = (trial, seed, params)
        self.done.add(future)

    def next_result(self):
        future = next(self.done)
        trial, seed, params = self.futures.pop(future.key)
        try:
            return future.result()
        except Exception as error:  # noqa: BLE001 -- e.g. KilledWorker: the worker died again
            return {**new_record(trial, seed, params),
                    "error": f"{type(error).__name__}: {error}"}

    def close(self):
        for resource in self.owned:
            resource.close()


def _executor(train, sampler, n_trials, workers, client, worker_threads, connect_timeout):
    if workers == 0 and client is None:
        return _Serial(train)
    dask_client, owned = _dask_executor(train, client, workers, worker_threads, connect_timeout)
    return _Dask(train, dask_client, owned, getattr(sampler, "in_flight", n_trials),
                 worker_threads)


def _dask_executor(train, client, workers, worker_threads, connect_timeout):
    try:
        import distributed
    except ImportError:
        raise ImportError("running trials on Dask needs dask.distributed: pip install "
                          "'fastconv[distributed]' (or workers=0 to run serially)") from None
    if isinstance(client, distributed.Client):
        return client, []
    if isinstance(client, str):
        check_scheduler_answers(client, connect_timeout)  # else Dask's client can hang
        try:
            connected = distributed.Client(client, timeout=connect_timeout)
        except (OSError, TimeoutError) as error:
            raise ConnectionError(f"could not reach the Dask scheduler at {client!r} within "
                                  f"{connect_timeout} s: {error}") from None
        return connected, [connected]
    if client is not None:
        raise TypeError(f"client must be a dask.distributed.Client, a scheduler address or "
                        f"None; got {client!r}")
    connected, cluster = start_local_cluster(workers or os.cpu_count() or 1, worker_threads)
    return connected, [connected, cluster]


def start_local_cluster(workers, worker_threads=1):
    """A LocalCluster of ``workers`` processes with one Dask thread each; ``(client, cluster)``.

    Each gets NUMBA_NUM_THREADS=``worker_threads``, which holds only where the worker imports
    Numba after the variable is set; a worker that runs a script importing fastconv has
    already imported it (Numba then has one thread per core). run_trial's ``threads`` sets
    each trial's count in every case."""
    import logging

    import distributed
    with warnings.catch_warnings():
        # without a dashboard the scheduler still serves metrics over HTTP, on port 8787 or,
        # when that is taken (a second cluster), any free port after a UserWarning
        warnings.filterwarnings("ignore", message="Port 8787 is already in use")
        cluster = distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR, env={"NUMBA_NUM_THREADS": str(worker_threads or 1)})
    return distributed.Client(cluster), cluster


def _best(records, metric, goal):
    values = [r[metric] for r in records if isinstance(r.get(metric), (int, float))
              and not isinstance(r.get(metric), bool) and r[metric] == r[metric]]
    if not values:
        return None
    return max(values) if goal == "max" else min(values)


def _open_bar(progress, n_trials, initial):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=n_trials, initial=initial, desc="sweep", unit="trial", dynamic_ncols=True)


def run_sweep(train, space, n_trials, seed=0, *, sampler="random", results=None,
              workers=None, client=None, worker_threads=1, checkpoint_dir=None,
              metric=None, goal="max", progress=True, connect_timeout=10):
    """Run ``n_trials`` trainings of ``train`` over ``space``; the records sorted by trial.

    ``train(hyperparameters, seed)`` trains once and returns a dict of metrics (numbers,
    lists, strings: what JSON holds). With ``checkpoint_dir`` it is called as
    ``train(hyperparameters, seed, checkpoint=PATH)``, a file of its own in that folder, so a
    trial rescheduled after its worker died can resume from its ``Trainer`` checkpoint.

    Where the trials run: ``workers=0`` serially in this process, without Dask;
    ``workers=N`` on a new local Dask cluster of N processes with one thread each;
    ``client=`` a ``dask.distributed.Client`` or a scheduler address (``"tcp://host:8786"``,
    reached within ``connect_timeout`` seconds or a ConnectionError); neither: a local
    cluster with one process per core. On Dask, each trial runs fastconv on
    ``worker_threads`` threads (default 1; at most the worker's Numba threads, one per core
    unless NUMBA_NUM_THREADS was set; None: the worker's own setting); serially, the
    process's setting applies.

    ``sampler``: ``"random"``, ``"grid"``, ``"tpe"`` (Optuna; needs ``metric``) or a sampler
    object (see fastconv.sweep.samplers) made with this space, seed, goal and metric. Trial
    ``i``'s hyperparameters and seed come from ``seed`` and ``i`` alone, so the records are
    the same, bit for bit, however the trials are spread. ``results``: a JSON Lines file,
    held by this sweep alone while it runs; each finished trial is appended as it arrives,
    and trials already in the file are skipped (the file must come from the same sweep).
    ``metric``/``goal`` (``"max"`` or ``"min"``) name the result that the progress bar
    reports the best of (a metric missing from a trial's results is warned about once). A
    trial that raises (or calls sys.exit) is recorded with ``error``, and the sweep goes on.
    Bad arguments raise before anything starts.
    """
    _check_arguments(train, n_trials, goal, metric, workers, worker_threads, client,
                     checkpoint_dir, results, connect_timeout)
    n_trials = int(n_trials)
    seed = check_seed(seed)
    sampler = make_sampler(sampler, space, n_trials, seed, metric, goal)
    file = None
    try:
        if results is not None:
            # its lock is held from here to the end: a second sweep is refused
            file = ResultsFile(results)
        finished = {} if file is None else file.records
        _verify_finished(sampler, finished, n_trials, seed, None if file is None else file.path)
        # the files first: a cluster started before they fail would be left running
        made = [] if checkpoint_dir is None else _make_folder(checkpoint_dir)
        try:
            if file is not None:
                file.open()
            executor = _executor(train, sampler, n_trials, workers, client, worker_threads,
                                 connect_timeout)
        except BaseException:  # no trial ran: what this call made goes again
            if file is not None:
                file.discard()
            for folder in made:
                with contextlib.suppress(OSError):  # (not empty: another process's files)
                    os.rmdir(folder)
            raise
        try:
            _drive(sampler, executor, file, finished, n_trials, seed, checkpoint_dir, metric,
                   goal, progress)
        finally:
            executor.close()
    finally:
        if file is not None:
            file.close()
    return [finished[trial] for trial in sorted(finished) if trial < n_trials]


def _make_folder(path):
    """``os.makedirs(path, exist_ok=True)``; the folders it made, deepest first."""
    missing, folder = [], os.path.abspath(os.fspath(path))
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(path, exist_ok=True)
    return missing


def _drive(sampler, executor, file, finished, n_trials, base_seed, checkpoint_dir, metric,
           goal, progress):
    bar = _open_bar(progress, n_trials, sum(t < n_trials for t in finished))
    start, done_here = time.perf_counter(), 0
    next_trial, running, warned = 0, 0, False
    try:
        while True:
            while (next_trial < n_trials and running < executor.limit
                   and sampler.can_ask(next_trial, finished)):
                params = sampler.params(next_trial, finished)  # also replays Optuna's history
                if next_trial not in finished:
                    seed = trial_seed(base_seed, next_trial)
                    checkpoint = (None if checkpoint_dir is None
                                  else checkpoint_path(checkpoint_dir, next_trial, seed, params))
                    executor.submit(next_trial, seed, params, checkpoint)
                    running += 1
                next_trial += 1
            if not running:
                break
            record = executor.next_result()
            running -= 1
            done_here += 1
            finished[record["trial"]] = record
            if file is not None:
                file.append(record)
            if metric is not None and not warned and "error" not in record \
                    and metric not in record:
                warned = True  # once: a misspelt metric is missing from every trial
                returned = [key for key in record if key not in RESERVED
                            and key not in sampler.space]
                warnings.warn(f"metric {metric!r} is not among the results of trial "
                              f"{record['trial']}, which returned {returned}", stacklevel=3)
            if bar is not None:
                if "error" in record:
                    bar.write(f"trial {record['trial']} failed: {record['error']}")
                minutes = (time.perf_counter() - start) / 60
                postfix = {"trials/min": f"{done_here / minutes:.1f}" if minutes else "-"}
                best = _best(finished.values(), metric, goal) if metric else None
                if best is not None:
                    postfix[f"best {metric}"] = f"{best:.4g}"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
