"""fastconv.sweep: determinism, nothing lost, bad input refused before anything starts.

The Dask cases run their driver in a subprocess with a time limit (a hang fails the test, not
the suite) on a local cluster of 2 worker processes, and compare its results file with a
serial run's in this process. The training functions live in tests/sweep_trials.py.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import sweep_trials
from fastconv.sweep import (Choice, GridSampler, LogUniform, OptunaSampler, RandomSampler,
                            Uniform, checkpoint_path, read_results, run_sweep, run_trial,
                            trial_seed)
from fastconv.fileio import hold_lock, lock_file_for, release_lock
from fastconv.sweep import results as results_module
from fastconv.sweep import runner

TESTS = Path(__file__).resolve().parent
SPACE = {"lr": LogUniform(0.01, 1.0)}  # the same space as sweep_trials.main
TIMEOUT = 240  # seconds per driver subprocess: far above the ~20 s each needs under load


def sorted_lines(path):
    return sorted(Path(path).read_text().splitlines(), key=lambda line: json.loads(line)["trial"])


def run_driver(options, timeout=TIMEOUT):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, str(TESTS / "sweep_trials.py"), json.dumps(options)],
                          capture_output=True, text=True, timeout=timeout, env=env)


class Counted:
    """A training function (by default, one returning a constant) that counts its calls."""

    def __init__(self, train=lambda hyperparameters, seed: {"val_acc": 0.5}):
        self.train, self.calls = train, 0

    def __call__(self, hyperparameters, seed):
        self.calls += 1
        return self.train(hyperparameters, seed)


class NewestFirst:
    """An executor for the sweep's driver that returns the newest submitted trial first:
    the completion order reversed, as a cluster may give it."""

    def __init__(self, train, limit):
        self.train, self.limit, self.queue = train, limit, []

    def submit(self, *trial):
        self.queue.append(trial)

    def next_result(self):
        return run_trial(self.train, *self.queue.pop())


# ---- samplers ----------------------------------------------------------------------------

def test_trial_draws_depend_on_base_seed_and_index_alone():
    space = {"weight_decay": LogUniform(1e-8, 1e-4), "lr": LogUniform(1e-6, 1e-2),
             "batch": Choice([50, 100]), "momentum": Uniform(0.5, 0.9)}
    sampler = RandomSampler(space, 7)
    forward = [sampler.params(i) for i in range(20)]
    backward = [RandomSampler(space, 7).params(i) for i in reversed(range(20))][::-1]
    assert forward == backward
    assert len({p["lr"] for p in forward}) == 20
    assert RandomSampler(space, 8).params(3) != forward[3]
    assert trial_seed(7, 3) == trial_seed(7, 3) != trial_seed(7, 4)
    lrs = np.array([RandomSampler(space, 7).params(i)["lr"] for i in range(400)])
    # log-uniform over four decades: about a quarter of the draws in each decade
    counts = np.histogram(np.log10(lrs), bins=[-6, -5, -4, -3, -2])[0]
    assert counts.sum() == 400 and counts.min() > 60, counts


def test_grid_covers_every_point_once():
    space = {"weight_decay": LogUniform(1e-8, 1e-4), "lr": LogUniform(1e-6, 1e-2)}
    grid = GridSampler(space, 100)
    points = [grid.params(i) for i in range(100)]
    assert points == grid.points()
    assert len({tuple(p.values()) for p in points}) == 100  # a 10 x 10 grid
    assert points[0] == {"weight_decay": 1e-8, "lr": 1e-6}
    assert points[99] == pytest.approx({"weight_decay": 1e-4, "lr": 1e-2}, rel=1e-12)
    with pytest.raises(ValueError, match="more than the grid's 4 points"):
        GridSampler(space, 5, points=2)


# ---- serial runs and the results file ----------------------------------------------------

def test_raising_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    path = tmp_path / "r.jsonl"
    records = run_sweep(sweep_trials.raises_on_large_lr, SPACE, 6, 0, workers=0, results=path,
                        progress=False)
    failed = [r for r in records if "error" in r]
    assert [r["trial"] for r in records] == list(range(6))
    assert failed and len(failed) < 6
    assert all(r["error"].startswith("FloatingPointError: lr ") and r["lr"] > 0.1
               for r in failed)
    assert all(0 <= r["val_acc"] <= 1 for r in records if "error" not in r)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records


def test_a_trial_that_calls_sys_exit_is_recorded_and_the_sweep_goes_on(serial_reference):
    records = [json.loads(line) for line in sorted_lines(serial_reference / "exits")]
    assert [r["trial"] for r in records] == list(range(6))
    failed = [r for r in records if "error" in r]
    assert failed and all(r["error"] == "SystemExit: 3" and r["lr"] > 0.1 for r in failed)


def test_results_json_cannot_hold_are_recorded_as_errors():
    records = run_sweep(lambda hyperparameters, seed: [0.5], SPACE, 1, 0, workers=0,
                        progress=False)
    assert records[0]["error"] == "TypeError: the training function must return a dict of " \
                                  "metrics; got list"
    records = run_sweep(lambda hyperparameters, seed: {"lr": 0.5}, SPACE, 1, 0, workers=0,
                        progress=False)
    assert records[0]["error"].startswith("ValueError: the training function returned the "
                                          "reserved or hyperparameter names ['lr']")
    records = run_sweep(lambda hyperparameters, seed: {"net": object()}, SPACE, 1, 0,
                        workers=0, progress=False)
    assert records[0]["error"].startswith("TypeError: Object of type object")


def test_each_trial_gets_its_own_checkpoint_in_the_folder(tmp_path):
    seen = {}

    def train(hyperparameters, seed, checkpoint):
        seen[seed] = checkpoint
        return {"val_acc": 0.5}

    folder = tmp_path / "shared" / "checkpoints"
    records = run_sweep(train, SPACE, 3, 0, workers=0, checkpoint_dir=folder, progress=False)
    assert folder.is_dir()
    assert seen == {r["seed"]: checkpoint_path(folder, r["trial"], r["seed"], {"lr": r["lr"]})
                    for r in records}
    assert len(set(seen.values())) == 3
    assert all(Path(path).name.startswith(f"trial-{i:06d}-") for i, path in
               enumerate(seen.values()))
    first = dict(seen)
    seen.clear()  # another sweep (another base seed) in the same folder: other files
    run_sweep(train, SPACE, 3, 1, workers=0, checkpoint_dir=folder, progress=False)
    assert not set(seen.values()) & set(first.values())


def test_torn_last_line_is_dropped_and_the_trial_runs_again(tmp_path):
    path = tmp_path / "r.jsonl"
    run_sweep(sweep_trials.train_tiny, SPACE, 3, 0, workers=0, results=path, progress=False)
    whole = path.read_bytes()
    path.write_bytes(whole[:-20])  # the third append cut short
    assert sorted(read_results(path)[0]) == [0, 1]
    counted = Counted(sweep_trials.train_tiny)
    records = run_sweep(counted, SPACE, 3, 0, workers=0, results=path, progress=False)
    assert path.read_bytes() == whole
    assert len(records) == 3 and counted.calls == 1


def test_restart_skips_finished_trials(tmp_path):
    path = tmp_path / "r.jsonl"
    run_sweep(sweep_trials.train_tiny, SPACE, 4, 0, workers=0, results=path, progress=False)
    counted = Counted()
    records = run_sweep(counted, SPACE, 6, 0, workers=0, results=path, progress=False)
    assert counted.calls == 2
    assert [r["trial"] for r in records] == list(range(6))


def test_driver_killed_then_restarted_runs_no_trial_twice(tmp_path):
    """Serial driver: trial 3's first run SIGKILLs the driver itself; the restart must run
    trials 3-5 once more each and trials 0-2 never again."""
    path, folder = tmp_path / "r.jsonl", tmp_path / "markers"
    folder.mkdir()
    options = {"train": "kills", "n_trials": 6, "seed": 0, "workers": 0,
               "results": str(path), "folder": str(folder), "victim_seed": trial_seed(0, 3)}
    first = run_driver(options)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert sorted(read_results(path)[0]) == [0, 1, 2]
    second = run_driver(options)
    assert second.returncode == 0, second.stderr
    reference = tmp_path / "reference.jsonl"
    run_sweep(sweep_trials.train_tiny, SPACE, 6, 0, workers=0, results=reference,
              progress=False)
    assert path.read_bytes() == reference.read_bytes()
    runs = sweep_trials.runs_per_seed(folder)
    assert runs == {trial_seed(0, i): 2 if i == 3 else 1 for i in range(6)}


def test_a_second_sweep_on_the_results_file_is_refused_and_cuts_nothing(tmp_path):
    """Driver A holds the file's lock and has begun a line; driver B must not cut it off."""
    path = tmp_path / "r.jsonl"
    run_sweep(Counted(), SPACE, 2, 0, workers=0, results=path, progress=False)
    path.write_bytes(path.read_bytes() + b'{"trial": 2, "se')
    content = path.read_bytes()
    lock = lock_file_for(path)
    fd = hold_lock(lock, "driver A's results file")
    try:
        counted = Counted()
        with pytest.raises(OSError, match="is in use by another sweep"):
            run_sweep(counted, SPACE, 3, 0, workers=0, results=path, progress=False)
    finally:
        release_lock(lock, fd)
    assert counted.calls == 0 and path.read_bytes() == content
    assert len(run_sweep(Counted(), SPACE, 3, 0, workers=0, results=path, progress=False)) == 3


def test_without_locks_a_file_that_grew_since_it_was_read_is_not_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(results_module, "hold_lock", lambda *args: None)  # e.g. NFS, no locks
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"trial": 0, "se')
    file = results_module.ResultsFile(path)
    try:
        with open(path, "ab") as other:  # another driver completes its line
            other.write(b'ed": 1}\n')
        with pytest.raises(OSError, match="changed after it was read"):
            file.open()
    finally:
        file.close()
    assert path.read_bytes() == b'{"trial": 0, "seed": 1}\n'


# ---- bad input: a clear error, and nothing starts ----------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"sampler": "bayes"}, ValueError, "unknown sampler 'bayes'"),
    ({"space": {}}, ValueError, "space is empty"),
    ({"space": {"lr": (1e-3, 1e-1)}}, TypeError, r"space\['lr'\] must be"),
    ({"n_trials": 0}, ValueError, "n_trials must be a positive integer"),
    ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
    ({"workers": 2, "client": "tcp://127.0.0.1:1"}, ValueError, "not both"),
    ({"goal": "maximize"}, ValueError, "goal must be one of"),
    ({"n_trials": 2.0}, ValueError, "n_trials must be a positive integer"),
    ({"results": 3}, TypeError, "results must be a path"),
    ({"connect_timeout": "2s"}, ValueError, "connect_timeout must be a positive finite number "
                                            "of seconds; got '2s'"),
    ({"connect_timeout": float("nan")}, ValueError, "connect_timeout must be a positive"),
    ({"connect_timeout": 0}, ValueError, "connect_timeout must be a positive"),
    ({"sampler": GridSampler(SPACE, 2, points=2)}, ValueError,
     "n_trials=3 is more than the GridSampler's 2 points"),
    ({"sampler": RandomSampler(SPACE, 5)}, ValueError,
     "run_sweep was given seed 0 but the RandomSampler was made with seed 5"),
    ({"sampler": RandomSampler({"x": Uniform(0, 1)}, 0)}, ValueError,
     r"run_sweep was given space \{'lr': LogUniform\(0.01, 1.0\)\} but the RandomSampler"),
])
def test_bad_arguments_start_nothing(tmp_path, kwargs, error, message):
    counted = Counted()
    arguments = {"space": SPACE, "n_trials": 3, "seed": 0, "workers": 0,
                 "results": tmp_path / "r.jsonl", **kwargs}
    with pytest.raises(error, match=message):
        run_sweep(counted, progress=False, **arguments)
    assert counted.calls == 0
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("content, message", [
    (b'{"trial": 0, "seed": 1}\nnot json\n', "line 2 is not valid JSON"),
    (b'[1, 2]\n', "line 1 is not a JSON object"),
    (b'{"seed": 1}\n', "line 1 has no non-negative integer 'trial'"),
    (b'{"trial": 0, "seed": 1, "a": 1}\n{"trial": 0, "seed": 1, "a": 2}\n', "recorded twice"),
    (b"my notes, without a final newline", "is not a results file"),
    (b'{"trial": 0, "seed": 1}\nnotes', "is not a results file"),
])
def test_malformed_results_file_is_refused_and_kept(tmp_path, content, message):
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    counted = Counted()
    with pytest.raises(ValueError, match=message):
        run_sweep(counted, SPACE, 3, 0, workers=0, results=path, progress=False)
    assert counted.calls == 0 and path.read_bytes() == content


def test_results_of_another_sweep_are_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    run_sweep(Counted(), SPACE, 2, 0, workers=0, results=path, progress=False)
    content = path.read_bytes()
    counted = Counted()
    with pytest.raises(ValueError, match="written by another sweep: trial 0 has seed="):
        run_sweep(counted, SPACE, 3, 1, workers=0, results=path, progress=False)
    assert counted.calls == 0 and path.read_bytes() == content


def test_results_of_a_sweep_over_more_hyperparameters_are_refused(tmp_path):
    # the random sampler draws the dimensions in order, so the first space's draws of lr are
    # this one's: only the records' list of names tells the extra dimension from a metric
    path = tmp_path / "r.jsonl"
    wider = {**SPACE, "weight_decay": LogUniform(1e-8, 1e-1)}
    run_sweep(Counted(), wider, 2, 0, workers=0, results=path, progress=False)
    content = path.read_bytes()
    counted = Counted()
    with pytest.raises(ValueError, match=r"trial 0 has the hyperparameters \['lr', "
                                         r"'weight_decay'\] where this sweep's space has \['lr'\]"):
        run_sweep(counted, SPACE, 3, 0, workers=0, results=path, progress=False)
    assert counted.calls == 0 and path.read_bytes() == content


def test_records_written_before_they_listed_their_hyperparameters_are_resumed(tmp_path):
    path = tmp_path / "r.jsonl"
    first = run_sweep(Counted(), SPACE, 2, 0, workers=0, results=path, progress=False)
    assert all(record["hyperparameters"] == ["lr"] for record in first)
    old = [{k: v for k, v in record.items() if k != "hyperparameters"} for record in first]
    path.write_text("".join(json.dumps(record) + "\n" for record in old))
    counted = Counted()
    records = run_sweep(counted, SPACE, 3, 0, workers=0, results=path, progress=False)
    assert counted.calls == 1 and records[:2] == old and records[2]["hyperparameters"] == ["lr"]


@pytest.mark.parametrize("where", ["results", "checkpoint_dir"])
def test_a_path_that_cannot_be_made_is_refused_before_a_cluster_starts(tmp_path, monkeypatch,
                                                                       where):
    pytest.importorskip("distributed")
    started = []
    monkeypatch.setattr(runner, "start_local_cluster", lambda *args: started.append(args))
    (tmp_path / "a-file").write_text("")
    paths = {"results": tmp_path / "no" / "such" / "r.jsonl",
             "checkpoint_dir": tmp_path / "a-file" / "checkpoints"}
    with pytest.raises(OSError):
        run_sweep(Counted(), SPACE, 2, 0, workers=2, progress=False, **{where: paths[where]})
    assert started == []


def test_a_results_file_that_cannot_be_opened_is_refused_before_a_cluster_starts(
        tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    started = []
    monkeypatch.setattr(runner, "start_local_cluster", lambda *args: started.append(args))

    def cannot_open(self):
        raise PermissionError(13, "Permission denied", self.path)
    monkeypatch.setattr(results_module.ResultsFile, "open", cannot_open)
    with pytest.raises(PermissionError):
        run_sweep(Counted(), SPACE, 2, 0, workers=2, progress=False,
                  results=tmp_path / "r.jsonl", checkpoint_dir=tmp_path / "checkpoints")
    assert started == [] and not (tmp_path / "checkpoints").exists()


def test_a_sweep_that_cannot_reach_its_cluster_leaves_no_file_or_folder_it_made(tmp_path):
    pytest.importorskip("distributed")
    # the results file (a symbolic link's new target: the link stays) and the checkpoint
    # folders, made before the connection, go again; what was there before stays
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "target.jsonl")
    (tmp_path / "old").mkdir()
    for results in ("link.jsonl", "r.jsonl"):
        with pytest.raises(ConnectionError):
            run_sweep(Counted(), SPACE, 2, 0, client="tcp://127.0.0.1:1", connect_timeout=1,
                      progress=False, results=tmp_path / results,
                      checkpoint_dir=tmp_path / "old" / "new" / "checkpoints")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "old"]
        assert (tmp_path / "link.jsonl").is_symlink() and not list((tmp_path / "old").iterdir())


def test_the_example_cli_turns_a_bad_results_path_into_a_usage_error(tmp_path, capsys):
    sys.path.insert(0, str(TESTS.parent / "examples"))
    try:
        import _sweep_cli
    finally:
        sys.path.pop(0)
    args = argparse.Namespace(trials=2, seed=0, sampler="random", workers=0, scheduler=None,
                              results=str(tmp_path / "no" / "r.jsonl"), checkpoint_dir=None)
    with pytest.raises(SystemExit) as exited:
        _sweep_cli.run(args, Counted(), SPACE)
    assert exited.value.code == 2
    assert "error: [Errno 2] the results file's folder does not exist" in capsys.readouterr().err


def test_optuna_sampler_made_for_another_goal_is_refused(tmp_path):
    pytest.importorskip("optuna")
    sampler = OptunaSampler(SPACE, 0, "val_acc", "max")
    for kwargs, message in (({"goal": "min"}, "given goal 'min' but the OptunaSampler was made "
                                              "with goal 'max'"),
                            ({"metric": "loss"}, "given metric 'loss' but the OptunaSampler")):
        with pytest.raises(ValueError, match=message):
            run_sweep(Counted(), SPACE, 3, 0, sampler=sampler, workers=0,
                      results=tmp_path / "r.jsonl", progress=False, **kwargs)
    assert not (tmp_path / "r.jsonl").exists()


def test_an_optuna_sampler_object_serves_one_sweep_and_a_new_one_resumes(tmp_path):
    pytest.importorskip("optuna")
    path = tmp_path / "r.jsonl"

    def stopped_after_two(hyperparameters, seed):
        stopped_after_two.calls += 1
        if stopped_after_two.calls > 2:
            raise KeyboardInterrupt  # as a Ctrl-C in a notebook would stop the sweep
        return {"val_acc": hyperparameters["lr"]}
    stopped_after_two.calls = 0
    sampler = OptunaSampler(SPACE, 0, "val_acc", "max", in_flight=1)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(stopped_after_two, SPACE, 4, 0, sampler=sampler, metric="val_acc",
                  workers=0, results=path, progress=False)
    content = path.read_bytes()
    with pytest.raises(ValueError, match="has served a run_sweep call already; make a new one"):
        run_sweep(Counted(), SPACE, 4, 0, sampler=sampler, metric="val_acc", workers=0,
                  results=path, progress=False)
    assert path.read_bytes() == content
    fresh = OptunaSampler(SPACE, 0, "val_acc", "max", in_flight=1)
    records = run_sweep(lambda hyperparameters, seed: {"val_acc": hyperparameters["lr"]}, SPACE,
                        4, 0, sampler=fresh, metric="val_acc", workers=0, results=path,
                        progress=False)
    assert [r["trial"] for r in records] == [0, 1, 2, 3]


def test_a_metric_no_trial_returns_is_warned_about_once():
    with pytest.warns(UserWarning) as caught:
        run_sweep(Counted(), SPACE, 3, 0, metric="val_ac", workers=0, progress=False)
    assert [str(w.message) for w in caught] == [
        "metric 'val_ac' is not among the results of trial 0, which returned ['val_acc']"]


def test_choice_and_ranges_refuse_what_a_sweep_cannot_use():
    with pytest.raises(ValueError, match="Choice values must not be NaN"):
        Choice([1.0, float("nan")])
    with pytest.raises(TypeError, match="Choice takes a list of values; got the string 'abc'"):
        Choice("abc")
    with pytest.raises(ValueError, match="high - low must be a finite number"):
        Uniform(-1.7e308, 1.7e308)
    choice = Choice([np.int64(1), np.float64(0.5), np.bool_(True)])
    assert choice.values == [1, 0.5, True] and type(choice.values[0]) is int
    records = run_sweep(Counted(), {"c": choice}, np.int64(2), np.int64(0), workers=0,
                        progress=False)
    assert len(records) == 2


def test_unpicklable_train_is_refused_before_a_cluster_starts(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    started = []
    monkeypatch.setattr(runner, "start_local_cluster", lambda *args: started.append(args))
    lock = threading.Lock()

    def train(hyperparameters, seed):
        with lock:
            return {"val_acc": 0.5}

    with pytest.raises(TypeError, match="train cannot be sent to Dask workers"):
        run_sweep(train, SPACE, 2, 0, workers=2, results=tmp_path / "r.jsonl", progress=False)
    assert started == [] and not (tmp_path / "r.jsonl").exists()


def test_without_dask_a_sweep_on_workers_says_dask_is_missing(monkeypatch):
    # not that the function cannot be pickled: Dask's cloudpickle sends lambdas
    for module in ("cloudpickle", "distributed"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match="dask.distributed"):
        run_sweep(lambda hyperparameters, seed: {}, SPACE, 2, 0, workers=2, progress=False)


def test_the_examples_take_a_seed_numpy_can_use(capsys):
    sys.path.insert(0, str(TESTS.parent / "examples"))
    try:
        import _common
        import _sweep_cli
    finally:
        sys.path.pop(0)
    parser = _common.make_parser("")  # every example's (a sweep's base seed too)
    _sweep_cli.add_sweep_options(parser, _common.positive_int)
    assert parser.parse_args(["--seed", str(2 ** 32 - 1)]).seed == 2 ** 32 - 1
    for seed in ("-1", str(2 ** 32)):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(["--seed", seed])
        assert exited.value.code == 2
        assert "must be an integer from 0 to 2**32 - 1" in capsys.readouterr().err


def examples_module(name):
    sys.path.insert(0, str(TESTS.parent / "examples"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_the_example_cli_refuses_results_run_with_other_settings(tmp_path, capsys):
    cli = examples_module("_sweep_cli")

    def run(trials, epochs):
        settings = {"--epochs": epochs}
        args = argparse.Namespace(trials=trials, seed=0, sampler="random", workers=0,
                                  scheduler=None, results=str(tmp_path / "r.jsonl"),
                                  checkpoint_dir=None)
        return cli.run(args, lambda hyperparameters, seed: {"val_acc": 0.5,
                                                            "settings": settings},
                       SPACE, settings=settings)

    records, _, fresh = run(2, 5)
    assert len(records) == 2 and fresh == records
    records, _, fresh = run(3, 5)
    assert len(records) == 3 and fresh == records[2:]  # not the 2 trials from the file
    content = (tmp_path / "r.jsonl").read_bytes()
    with pytest.raises(SystemExit) as exited:
        run(4, 6)
    assert exited.value.code == 2
    assert "holds trials run with --epochs 5, not 6 as now" in capsys.readouterr().err
    assert (tmp_path / "r.jsonl").read_bytes() == content


def test_the_ch06_example_refuses_test_size_which_it_does_not_use(tmp_path, capsys):
    example = examples_module("hyperparameter_optimization")
    with pytest.raises(SystemExit) as exited:
        example.main(["--test-size", "5", "--out", str(tmp_path / "out")])
    assert exited.value.code == 2
    assert "--test-size: this script uses no test images" in capsys.readouterr().err


def test_the_convnet_sweep_stops_on_missing_data_before_any_trial(tmp_path, monkeypatch):
    # it recorded every trial as failed, which a rerun with the data would then have skipped
    import fastconv.datasets.download as downloads

    def no_network(*args, **kwargs):
        raise OSError("no network in this test")
    monkeypatch.setattr(downloads, "download", no_network)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    example = examples_module("sweep_convnet")
    results = tmp_path / "r.jsonl"
    with pytest.raises(SystemExit) as exited:
        example.main(["--quick", "--workers", "0", "--data-dir", str(tmp_path / "none"),
                      "--results", str(results), "--out", str(tmp_path / "out")])
    assert "give --data-dir a folder" in str(exited.value.code)
    assert not results.exists()


# ---- Dask --------------------------------------------------------------------------------

def test_unreachable_scheduler_times_out_and_starts_nothing(tmp_path):
    pytest.importorskip("distributed")
    with socket.socket() as probe:  # a port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    counted = Counted()
    with pytest.raises(ConnectionError, match="could not reach the Dask scheduler"):
        run_sweep(counted, SPACE, 3, 0, client=address, connect_timeout=1,
                  results=tmp_path / "r.jsonl", progress=False)
    assert counted.calls == 0 and not (tmp_path / "r.jsonl").exists()


def _serve(server, greeting):
    """Accept connections on server and send each the greeting (bytes, maybe none; None:
    close each at once), until server is closed."""
    connections = []
    while True:
        try:
            connection, _ = server.accept()
        except OSError:
            break
        if greeting is None:
            connection.close()
            continue
        connections.append(connection)
        connection.sendall(greeting)
    for connection in connections:
        connection.close()


@pytest.mark.parametrize("greeting, message", [
    (b"", "accepted the connection but sent nothing within 1 s"),
    (b"SSH-2.0-OpenSSH_9.6\r\n", r"began with b'SSH-2.0-OpenSSH_', which is not a Dask"),
    (None, "accepted the connection but sent nothing and closed it"),
])
def test_a_server_that_is_not_a_scheduler_is_refused_in_time(tmp_path, greeting, message):
    # Dask's client alone waits for ever on the first and fails allocating exabytes on the
    # second
    pytest.importorskip("distributed")
    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_serve, args=(server, greeting), daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    counted = Counted()
    result = {}

    def sweep():
        try:
            run_sweep(counted, SPACE, 2, 0, client=address, connect_timeout=1,
                      results=tmp_path / "r.jsonl", progress=False)
        except Exception as error:  # noqa: BLE001 -- inspected below
            result["error"] = error
    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    thread.join(60)
    server.close()
    assert not thread.is_alive(), "the sweep hung on a server that is not a Dask scheduler"
    assert isinstance(result.get("error"), ConnectionError), result
    assert re.search(message, str(result["error"])), result["error"]
    assert counted.calls == 0 and not (tmp_path / "r.jsonl").exists()


def test_a_scheduler_given_by_its_address_runs_the_sweep(tmp_path):
    distributed = pytest.importorskip("distributed")
    expected = run_sweep(sweep_trials.train_tiny, SPACE, 3, 0, workers=0, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None, protocol="tcp",
                                  host="127.0.0.1") as cluster:
        records = run_sweep(sweep_trials.train_tiny, SPACE, 3, 0,
                            client=cluster.scheduler_address, progress=False)
    assert records == expected


@pytest.fixture(scope="module")
def serial_reference(tmp_path_factory):
    """The 6-trial sweeps of raises_on_large_lr, exits_on_large_lr and train_tiny, serially
    in this process."""
    folder = tmp_path_factory.mktemp("serial")
    for name, train in (("raises", sweep_trials.raises_on_large_lr),
                        ("exits", sweep_trials.exits_on_large_lr),
                        ("tiny", sweep_trials.train_tiny)):
        run_sweep(train, SPACE, 6, 0, workers=0, results=folder / name, progress=False)
    return folder


@pytest.mark.parametrize("train", ["raises", "exits"])
def test_two_workers_give_the_serial_results(tmp_path, serial_reference, train):
    # a trial that raises, or calls sys.exit, is recorded alike on Dask and serially
    pytest.importorskip("distributed")
    path = tmp_path / "r.jsonl"
    result = run_driver({"train": train, "n_trials": 6, "seed": 0, "workers": 2,
                         "results": str(path)})
    assert result.returncode == 0, result.stderr
    assert sorted_lines(path) == sorted_lines(serial_reference / train)
    assert any('"error": ' in line for line in sorted_lines(path))


def test_killed_worker_trial_is_rescheduled(tmp_path, serial_reference):
    pytest.importorskip("distributed")
    path, folder = tmp_path / "r.jsonl", tmp_path / "markers"
    folder.mkdir()
    result = run_driver({"train": "kills", "n_trials": 6, "seed": 0, "workers": 2,
                         "results": str(path), "folder": str(folder),
                         "victim_seed": trial_seed(0, 2)})
    assert result.returncode == 0, result.stderr
    assert (folder / "killed").exists()
    assert sweep_trials.runs_per_seed(folder)[trial_seed(0, 2)] == 2
    assert sorted_lines(path) == sorted_lines(serial_reference / "tiny")


def tpe_objective(hyperparameters, seed):
    return {"val_acc": -abs(np.log10(hyperparameters["lr"]) + 1.0)}


def test_tpe_is_independent_of_completion_order_and_restarts(tmp_path):
    """With a fixed in_flight, Optuna's TPE asks the same hyperparameters serially, in the
    reversed completion order, and after a restart that replays its history."""
    pytest.importorskip("optuna")
    serial = run_sweep(tpe_objective, SPACE, 14, 3, sampler="tpe", metric="val_acc",
                       workers=0, progress=False)
    assert len({r["lr"] for r in serial}) == 14

    finished = {}
    runner._drive(OptunaSampler(SPACE, 3, "val_acc", "max"), NewestFirst(tpe_objective, 4),
                  None, finished, 14, 3, None, "val_acc", "max", progress=False)
    assert [finished[i] for i in range(14)] == serial

    path = tmp_path / "r.jsonl"
    run_sweep(tpe_objective, SPACE, 9, 3, sampler="tpe", metric="val_acc", workers=0,
              results=path, progress=False)
    counted = Counted(tpe_objective)
    resumed = run_sweep(counted, SPACE, 14, 3, sampler="tpe", metric="val_acc", workers=0,
                        results=path, progress=False)
    assert resumed == serial and counted.calls == 5
