"""``python -m fastconv --checkpoint DIR SCRIPT``: a script that was never written to resume
(no seed, hyperparameters drawn at random between its Trainers) is killed at random moments
and run again with the same command, and ends with the bits of a run never stopped."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from fastconv import checkpoint, trainer as trainer_module
from fastconv.zerochange import probes, resume, rules

# ch06's hyperparameter search in small: unseeded data, learning rates drawn between the
# Trainers, Dropout drawing its masks from np.random in every step
SCRIPT = """
import sys
import numpy as np
from fastconv.multi_layer_net_extend import MultiLayerNetExtend
from fastconv.trainer import Trainer

x = np.random.rand(60, 12)
t = np.random.randint(0, 4, 60)
results = {}
for trial in range(3):
    lr = 10 ** np.random.uniform(-3, -1)
    network = MultiLayerNetExtend(12, [10], 4, use_dropout=True, dropout_ration=0.2)
    trainer = Trainer(network, x[:40], t[:40], x[40:], t[40:], epochs=200, mini_batch_size=8,
                      optimizer="Adam", optimizer_param={"lr": lr}, verbose=False)
    trainer.train()
    results[f"loss{trial}"] = trainer.train_loss_list
    results[f"test_acc{trial}"] = trainer.test_acc_list
    for key, value in network.params.items():
        results[f"{key}_{trial}"] = value
results["after"] = np.random.rand(3)
np.savez(sys.argv[1], **results)
print("done", len(results))
"""


def _command(script, folder, out):
    return [sys.executable, "-m", "fastconv", "--checkpoint", str(folder), str(script), str(out)]


def _run(command, cwd):
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _loaded(path):
    with np.load(path) as arrays:
        return dict(arrays)


def test_a_killed_script_run_again_ends_with_the_bits_of_a_run_never_stopped(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(SCRIPT))
    _run(_command(script, tmp_path / "whole", tmp_path / "whole.npz"), tmp_path)
    expected = _loaded(tmp_path / "whole.npz")
    whole = sorted(os.listdir(tmp_path / "whole"))
    # the folder's lock file went with the run
    assert whole == ["random-state.json"] + [f"trainer-{n}.ckpt" for n in (1, 2, 3)]

    # the killed run starts from the same np.random state, as a rerun of itself would
    folder = tmp_path / "killed"
    folder.mkdir()
    shutil.copy(tmp_path / "whole" / "random-state.json", folder)
    command = _command(script, folder, tmp_path / "killed.npz")
    chooser = random.Random(20261206)
    for attempt in range(4):
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            if attempt < 3:  # while a Trainer after the first trains (~0.5 s each)
                deadline = time.monotonic() + 120
                while (not (folder / "trainer-2.ckpt").exists() and proc.poll() is None
                       and time.monotonic() < deadline):
                    time.sleep(0.005)
                time.sleep(chooser.uniform(0, 0.15))
            else:  # at any moment from start-up on: imports, the start state, resuming
                time.sleep(chooser.uniform(0, 1.0))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
    # every run was cut short, after the first Trainer had finished, or this proved nothing
    assert not (tmp_path / "killed.npz").exists()
    assert (folder / "trainer-2.ckpt").exists()
    _run(command, tmp_path)
    got = _loaded(tmp_path / "killed.npz")
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert not [name for name in os.listdir(folder) if name.endswith(".tmp")]


def test_each_run_of_the_same_command_repeats_the_first(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(SCRIPT).replace("epochs=200", "epochs=2"))
    command = _command(script, "run", "out.npz")  # relative: to the folder it started in
    _run(command, tmp_path)
    first = _loaded(tmp_path / "out.npz")
    _run(command, tmp_path)  # every Trainer finds its finished checkpoint
    for key, value in _loaded(tmp_path / "out.npz").items():
        np.testing.assert_array_equal(value, first[key], err_msg=key)


OWN_OPTIMIZER_SCRIPT = """
import numpy as np
from fastconv.nets import TwoLayerNet
from fastconv.trainer import Trainer

class Halving:
    def update(self, params, grads):
        for key in params:
            params[key] -= 0.5 * grads[key]

x, t = np.random.rand(20, 6), np.random.randint(0, 3, 20)
Trainer(TwoLayerNet(6, 4, 3), x, t, x, t, epochs=1, mini_batch_size=10, optimizer=Halving(),
        verbose=False).train()
Trainer(TwoLayerNet(6, 4, 3), x, t, x, t, epochs=1, mini_batch_size=10, verbose=False).train()
print("trained")
"""


def test_a_trainer_whose_optimizer_cannot_be_saved_is_named_and_keeps_its_number(tmp_path):
    script = tmp_path / "own.py"
    script.write_text(textwrap.dedent(OWN_OPTIMIZER_SCRIPT))
    done = _run(_command(script, tmp_path / "run", "unused"), tmp_path)
    assert done.stdout == "trained\n"  # the script's own output, unchanged
    assert "trainer-1.ckpt not used: the Trainer's optimizer, Halving" in done.stderr
    assert sorted(os.listdir(tmp_path / "run")) == ["random-state.json", "trainer-2.ckpt"]
    assert "made no fastconv Trainer" not in done.stderr


def test_a_script_whose_trainers_cannot_be_saved_is_told_nothing_was_saved(tmp_path):
    script = tmp_path / "own_only.py"
    script.write_text(textwrap.dedent(OWN_OPTIMIZER_SCRIPT.rsplit("Trainer(", 1)[0]))
    done = _run(_command(script, tmp_path / "run", "unused"), tmp_path)
    assert "trainer-1.ckpt not used" in done.stderr
    assert "made no fastconv Trainer that can be saved" in done.stderr
    assert sorted(os.listdir(tmp_path / "run")) == ["random-state.json"]


def test_a_script_without_a_trainer_is_told_nothing_was_saved(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("print('hello')\n")
    done = _run(_command(script, tmp_path / "run", "unused"), tmp_path)
    assert done.stdout == "hello\n"
    assert "the script made no fastconv Trainer that can be saved" in done.stderr


def test_the_serve_rules_probe_trainers_take_no_run_checkpoint(tmp_path):
    trainer_module.checkpoint_trainers_into(tmp_path)
    try:
        Trainer = trainer_module.Trainer
        scenario = probes.SCENARIOS["fastconv.trainer"]["Trainer"]
        rules.behaviour_difference(Trainer, Trainer, scenario)  # (timings differ, as ever)
        assert trainer_module.run_checkpoints_taken() == 0
        assert os.listdir(tmp_path) == []
    finally:
        trainer_module.checkpoint_trainers_into(None)


@pytest.mark.parametrize("bad", [{"t_train": np.zeros(5, int)}, {"seed": -1}])
def test_a_trainer_that_is_refused_takes_no_run_checkpoint(tmp_path, bad):
    from fastconv.nets import TwoLayerNet
    x, t = np.random.rand(40, 6), np.random.randint(0, 3, 40)
    args = dict(network=TwoLayerNet(6, 4, 3), x_train=x, t_train=t, x_test=x, t_test=t,
                epochs=1, verbose=False)
    trainer_module.checkpoint_trainers_into(tmp_path)
    try:
        with pytest.raises((TypeError, ValueError)):
            trainer_module.Trainer(**dict(args, **bad))
        assert trainer_module.run_checkpoints_taken() == 0
        assert trainer_module.Trainer(**args).checkpoint == str(tmp_path / "trainer-1.ckpt")
    finally:
        trainer_module.checkpoint_trainers_into(None)


def _start_state(**changes):
    record = {"format": "fastconv-random-state", "version": 1, "bit_generator": "MT19937",
              "keys": [5] * 624, "pos": 624, "has_gauss": 0, "cached_gaussian": 0.0}
    record.update(changes)
    return json.dumps(record)


@pytest.mark.parametrize("text, why", [
    ("{", "not strict JSON"),
    (_start_state().replace('"cached_gaussian": 0.0', '"cached_gaussian": NaN'),
     "not strict JSON"),
    (_start_state(keys=[5] * 623), "keys must be 624 32-bit words"),
    (_start_state(keys=[1 << 32] * 624), "keys must be 624 32-bit words"),
    (_start_state(keys=[0.5] * 624), "keys must be 624 32-bit words"),
    (_start_state(pos=625), r"np.random pos must be an integer in \[0, 624\]; got 625"),
    (_start_state(has_gauss=2), r"has_gauss must be an integer in \[0, 1\]; got 2"),
    (_start_state(cached_gaussian="0"), "cached_gaussian must be a finite number; got '0'"),
    (_start_state().replace('"cached_gaussian": 0.0', '"cached_gaussian": 1e999'),
     "cached_gaussian must be a finite number; got inf"),
    (_start_state(bit_generator="PCG64"), "np.random state of 'PCG64', expected 'MT19937'"),
    (_start_state(version=2), "another format"),
    (_start_state(extra=1), "other fields"),
    (" " * (65 << 10), "more than"),
])
def test_a_start_state_file_fastconv_did_not_write_is_refused_and_changes_nothing(
        tmp_path, text, why):
    (tmp_path / "random-state.json").write_text(text)
    before = np.random.get_state()[1].copy()
    with pytest.raises(checkpoint.CheckpointError, match=why):
        resume.start(tmp_path)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert trainer_module.run_checkpoints_taken() == 0


def test_the_runner_names_a_refused_start_state_and_runs_nothing(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "random-state.json").write_text("[]")
    script = tmp_path / "plain.py"
    script.write_text("print('ran')\n")
    done = subprocess.run(_command(script, tmp_path / "run", "unused"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "--checkpoint" in done.stderr and "not a start state written by fastconv" in done.stderr


def test_a_checkpoint_folder_that_is_a_file_is_named_and_nothing_runs(tmp_path):
    (tmp_path / "afile").write_text("mine")
    script = tmp_path / "plain.py"
    script.write_text("print('ran')\n")
    done = subprocess.run(_command(script, tmp_path / "afile", "unused"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "afile is a file, not a folder" in done.stderr, done.stderr  # not "[Errno 17]"
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_written_start_state_reads_back_to_the_same_generator(tmp_path):
    np.random.seed(7)
    np.random.rand(5)  # a position inside the block of words
    want = np.random.get_state()
    resume.start(tmp_path)
    try:
        got = resume.read_start_state(tmp_path / "random-state.json")
        assert got[0] == want[0] and got[2:] == tuple(want[2:])
        np.testing.assert_array_equal(got[1], want[1])
    finally:
        resume.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the platform has no fork")
def test_a_forked_worker_takes_none_of_the_parents_numbers(tmp_path):
    trainer_module.checkpoint_trainers_into(tmp_path)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker of a script's multiprocessing pool
            os.write(write, repr(trainer_module._run_checkpoints.next_path(True)).encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        assert os.read(read, 200) == b"None"
        assert trainer_module._run_checkpoints.next_path(True) == str(tmp_path / "trainer-1.ckpt")
    finally:
        trainer_module.checkpoint_trainers_into(None)


SLOW_SCRIPT = """
import numpy as np
from fastconv.nets import TwoLayerNet
from fastconv.trainer import Trainer
x, t = np.random.rand(40, 6), np.random.randint(0, 3, 40)
Trainer(TwoLayerNet(6, 4, 3), x, t, x, t, epochs=4000, mini_batch_size=10,
        verbose=False).train()
print("trained")
"""


def test_a_second_run_with_the_same_folder_is_refused_until_the_first_ends(tmp_path):
    # two runs in one folder drew from different start states, removed each other's
    # temporary files and resumed from each other's saves
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(SLOW_SCRIPT))
    folder = tmp_path / "run"
    first = subprocess.Popen(_command(script, folder, "unused"), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "trainer-1.ckpt").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        state = (folder / "random-state.json").read_bytes()
        second = subprocess.run(_command(script, folder, "unused"), cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # the refusal came while the first still ran
        assert second.returncode == 2 and second.stdout == ""
        assert f"{folder} is in use by another run" in second.stderr
        assert (folder / "random-state.json").read_bytes() == state
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    # a kill releases the folder (resuming from its save is tested above; a script with no
    # Trainer shows the release without training 16,000 steps)
    quick = tmp_path / "quick.py"
    quick.write_text("print('ran')\n")
    done = _run(_command(quick, folder, "unused"), tmp_path)
    assert done.stdout == "ran\n"


def test_checkpoints_without_their_start_state_are_refused(tmp_path):
    script = tmp_path / "plain.py"
    script.write_text("print('ran')\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "trainer-1.ckpt").write_bytes(b"a run's save")
    done = subprocess.run(_command(script, folder, "unused"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert "holds trainer-1.ckpt but no random-state.json" in done.stderr
    assert sorted(os.listdir(folder)) == ["trainer-1.ckpt"]  # as it was


def test_a_start_state_write_cut_short_by_a_kill_leaves_no_file_behind(tmp_path):
    left = tmp_path / ".random-state.json.0123456789ab.tmp"
    left.write_text("{")
    resume.start(tmp_path)
    try:
        assert sorted(os.listdir(tmp_path)) == [".lock", "random-state.json"]
    finally:
        resume.stop()
    assert sorted(os.listdir(tmp_path)) == ["random-state.json"]


# a process that tries to take the lock of the file argv[1] names: LockedError where another
# holds it
LOCK_PROBE = "import sys; from fastconv.fileio import hold_lock; hold_lock(sys.argv[1], 'x')"

FORKING_SCRIPT = f"""
import os, subprocess, sys
lock = sys.argv[1]
child = os.fork()
if child == 0:
    sys.exit(0)  # through the interpreter's exit, exit handlers included
os.waitpid(child, 0)
other = subprocess.run([sys.executable, "-c", {LOCK_PROBE!r}, lock], capture_output=True,
                       text=True)
print(os.path.exists(lock), "LockedError" in other.stderr)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_folders_lock_stays_the_runs_until_it_ends_even_past_a_forked_childs_exit(tmp_path):
    script = tmp_path / "forking.py"
    script.write_text(FORKING_SCRIPT)
    folder = tmp_path / "run"
    done = _run(_command(script, folder, folder / ".lock"), tmp_path)
    assert done.stdout == "True True\n"  # the child's exit left the parent's lock alone
    assert sorted(os.listdir(folder)) == ["random-state.json"]


THREAD_SCRIPT = """
import threading, time
import numpy as np
from fastconv.nets import TwoLayerNet
from fastconv.trainer import Trainer

def later():
    time.sleep(0.5)  # the script's main part has returned by now
    x, t = np.random.rand(40, 6), np.random.randint(0, 3, 40)
    Trainer(TwoLayerNet(6, 4, 3), x, t, x, t, epochs=1, mini_batch_size=10,
            verbose=False).train()
    print("trained")

threading.Thread(target=later).start()
"""


def test_a_trainer_that_a_thread_makes_after_the_script_returned_is_saved_and_counted(tmp_path):
    script = tmp_path / "threaded.py"
    script.write_text(THREAD_SCRIPT)
    done = _run(_command(script, tmp_path / "run", "unused"), tmp_path)
    assert done.stdout == "trained\n"
    assert "made no fastconv Trainer" not in done.stderr  # the note waits for the thread
    assert sorted(os.listdir(tmp_path / "run")) == ["random-state.json", "trainer-1.ckpt"]
