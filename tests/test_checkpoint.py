"""Trainer checkpoints: resume to the same bits, Ctrl-C, SIGKILL, and files that must be refused."""
import functools
import io
import json
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import fastconv
from fastconv import checkpoint
from fastconv.checkpoint import CheckpointError
from fastconv.nets import MultiLayerNetExtend
from fastconv.trainer import OPTIMIZERS, Trainer

from conftest import blobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))


data = functools.partial(blobs, n_train=120, n_test=40, features=6)


def make_trainer(path, optimizer="adam", seed=None, hidden=(10, 10), epochs=4, lr=0.01,
                 batch=40, net_seed=3, network_options=(), **kwargs):
    """Dropout (np.random masks) and BatchNorm (running statistics): all the state there is."""
    np.random.seed(net_seed)
    options = {"use_dropout": True, "dropout_ration": 0.2, "use_batchnorm": True,
               **dict(network_options)}
    network = MultiLayerNetExtend(6, list(hidden), 3, **options)
    return Trainer(network, *data(), epochs=epochs, mini_batch_size=batch,
                   optimizer=optimizer, optimizer_param={"lr": lr}, verbose=False,
                   seed=seed, checkpoint=path, **kwargs)


def outcome(trainer):
    """Everything that must come out bit-identical."""
    network, optimizer = trainer.network, trainer.optimizer
    state = {"params/" + key: value.copy() for key, value in network.params.items()}
    for key, (layer, attr, _) in network._state_slots().items():
        state["state/" + key] = np.array(getattr(layer, attr))
    for name in type(optimizer)._state:
        for key, value in (getattr(optimizer, name) or {}).items():
            state[f"optimizer/{name}/{key}"] = value.copy()
    lists = (trainer.train_loss_list, trainer.train_acc_list, trainer.test_acc_list,
             trainer.current_iter, trainer.current_epoch, getattr(optimizer, "iter", None),
             trainer.final_test_acc)
    return state, lists


def assert_same(a, b):
    assert a[1] == b[1]
    assert a[0].keys() == b[0].keys()
    for key in a[0]:
        np.testing.assert_array_equal(a[0][key], b[0][key], err_msg=key)


@pytest.mark.parametrize("optimizer, seed", [(name, None) for name in sorted(OPTIMIZERS)]
                         + [("adam", 11)])
def test_resume_is_bit_identical(tmp_path, optimizer, seed):
    full = make_trainer(tmp_path / "full.ckpt", optimizer, seed)
    full.train()
    path = tmp_path / "part.ckpt"
    first = make_trainer(path, optimizer, seed)
    first.max_iter = 5  # stops after step 5 (mid-epoch: 3 steps an epoch) and saves there
    first.train()
    assert checkpoint.read_header(path)["progress"]["current_iter"] == 5
    resumed = make_trainer(path, optimizer, seed)
    resumed.train()
    assert resumed.resumed_from == 5
    assert_same(outcome(resumed), outcome(full))


def test_the_file_is_an_npz_with_a_json_header(tmp_path):
    path = tmp_path / "run.ckpt"  # the name is used as given
    trainer = make_trainer(path, epochs=1)
    trainer.train()
    assert sorted(os.listdir(tmp_path)) == ["run.ckpt"]
    with np.load(path, allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["params/W1"], trainer.network.params["W1"])
        header = json.loads(archive["header.json"])  # a member that is not .npy: its bytes
    assert header["format"] == "fastconv-checkpoint"
    assert header["optimizer"]["class"] == "Adam" and header["optimizer"]["iter"] == 3
    assert header["progress"]["current_iter"] == 3


def test_finished_checkpoint_runs_no_more_steps(tmp_path):
    path = tmp_path / "run.ckpt"
    make_trainer(path).train()
    again = make_trainer(path)
    again.train()
    assert again.resumed_from == again.max_iter == len(again.train_loss_list)
    assert again.optimizer.iter == again.max_iter


def test_more_epochs_continue_a_finished_run(tmp_path):
    path = tmp_path / "run.ckpt"
    make_trainer(path, epochs=2).train()
    longer = make_trainer(path, epochs=4)
    longer.train()
    full = make_trainer(tmp_path / "full.ckpt", epochs=4)
    full.train()
    assert_same(outcome(longer), outcome(full))


# --- Ctrl-C ----------------------------------------------------------------------------------

def interrupt_at(trainer, call, how):
    """Make the network's ``call``-th gradient raise SIGINT, or raise KeyboardInterrupt itself."""
    real = trainer.network.gradient
    calls = [0]

    def gradient(x, t):
        calls[0] += 1
        if calls[0] == call:
            if how == "signal":
                signal.raise_signal(signal.SIGINT)  # arrives in the middle of the step
            else:
                raise KeyboardInterrupt
        return real(x, t)
    trainer.network.gradient = gradient


def test_ctrl_c_finishes_the_step_saves_and_resumes_to_the_same_bits(tmp_path):
    full = make_trainer(tmp_path / "full.ckpt")
    full.train()
    path = tmp_path / "run.ckpt"
    trainer = make_trainer(path)
    interrupt_at(trainer, 5, "signal")
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    header = checkpoint.read_header(path)
    assert header["progress"]["current_iter"] == 5 and header["optimizer"]["iter"] == 5
    assert trainer.optimizer.iter == len(trainer.train_loss_list) == 5
    resumed = make_trainer(path)
    resumed.train()
    assert_same(outcome(resumed), outcome(full))


def test_interrupt_inside_a_step_keeps_the_last_whole_checkpoint(tmp_path):
    full = make_trainer(tmp_path / "full.ckpt")
    full.train()
    path = tmp_path / "run.ckpt"
    lines = []
    trainer = make_trainer(path)
    trainer.verbose, trainer.log = True, lines.append
    interrupt_at(trainer, 5, "raise")  # not a signal: nothing can hold it to the step's end
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert checkpoint.read_header(path)["progress"]["current_iter"] == 3  # the epoch's end
    assert "keeps the last checkpoint" in lines[-1]
    resumed = make_trainer(path)
    resumed.train()
    assert_same(outcome(resumed), outcome(full))


# --- SIGKILL at random moments ---------------------------------------------------------------

KILLED_SCRIPT = """
import sys
import numpy as np
from fastconv.nets import MultiLayerNetExtend
from fastconv.trainer import Trainer

checkpoint, result = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
x = rng.standard_normal((200, 6)) + rng.integers(0, 3, 200)[:, None]
t = (x.sum(axis=1) > x.sum(axis=1).mean()).astype(int)
np.random.seed(5)
network = MultiLayerNetExtend(6, [12, 12], 2, use_dropout=True, dropout_ration=0.2,
                              use_batchnorm=True)
trainer = Trainer(network, x[:160], t[:160], x[160:], t[160:], epochs=25,
                  mini_batch_size=20, optimizer="Adam", optimizer_param={"lr": 0.01},
                  verbose=False, checkpoint=checkpoint, checkpoint_every=3)
trainer.train()
arrays = {"params/" + key: value for key, value in network.params.items()}
for key, (layer, attr, _) in network._state_slots().items():
    arrays["state/" + key] = getattr(layer, attr)
np.savez(result, loss=trainer.train_loss_list, train_acc=trainer.train_acc_list,
         test_acc=trainer.test_acc_list, adam_iter=trainer.optimizer.iter, **arrays)
"""


def test_sigkill_at_random_moments_then_the_same_command_ends_bit_identical(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(KILLED_SCRIPT))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))

    def command(name):
        return [sys.executable, str(script), str(tmp_path / (name + ".ckpt")),
                str(tmp_path / (name + ".npz"))]

    reference = subprocess.run(command("reference"), env=env, capture_output=True,
                               text=True, timeout=300)
    assert reference.returncode == 0, reference.stderr
    with np.load(tmp_path / "reference.npz") as loaded:
        expected = dict(loaded)

    path = tmp_path / "killed.ckpt"

    def saved_step():
        try:
            return checkpoint.read_header(path)["progress"]["current_iter"]
        except (OSError, CheckpointError):
            return 0

    chooser = random.Random(20261201)
    steps_at_kills = []
    for attempt in range(5):  # bounded: five kills, then the run to the end
        before = saved_step()
        proc = subprocess.Popen(command("killed"), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            if attempt % 2:  # any moment from start-up on: imports, resuming, first steps
                time.sleep(chooser.uniform(0, 1.5))
            else:  # once this run has saved a step of its own, a moment later
                deadline = time.monotonic() + 120
                while saved_step() <= before and proc.poll() is None \
                        and time.monotonic() < deadline:
                    time.sleep(0.005)
                time.sleep(chooser.uniform(0, 0.2))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        steps_at_kills.append(saved_step())
    final = subprocess.run(command("killed"), env=env, capture_output=True, text=True,
                           timeout=300)
    assert final.returncode == 0, final.stderr
    # the kills must have cut some runs short, or this test proved nothing
    assert any(0 < step < 200 for step in steps_at_kills), steps_at_kills
    with np.load(tmp_path / "killed.npz") as loaded:
        got = dict(loaded)
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert int(got["adam_iter"]) == len(got["loss"]) == 200
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


# --- refusals: another run's checkpoint, malformed and hostile files -------------------------

def snapshot(trainer):
    return outcome(trainer), np.random.get_state()[1].copy(), trainer.current_iter


def assert_refused(trainer, path, match):
    before = snapshot(trainer)
    with pytest.raises(CheckpointError, match=match):
        trainer.train()
    after = snapshot(trainer)
    assert_same(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert after[2] == before[2] == 0


@pytest.fixture
def saved(tmp_path):
    """A checkpoint after 5 steps of the default trainer."""
    path = tmp_path / "run.ckpt"
    trainer = make_trainer(path)
    trainer.max_iter = 5
    trainer.train()
    return path


@pytest.mark.parametrize("change, match", [
    ({"hidden": (10, 12)}, r"another network: parameter 'W2' is float64 \(10, 10\) in the "
                           r"checkpoint, float64 \(10, 12\) here"),
    ({"hidden": (10, 10, 10)}, r"another network: .*'W4' is missing in the checkpoint"),
    ({"optimizer": "sgd"}, r"another optimizer: the 'Adam' optimizer, not 'SGD'"),
    ({"lr": 0.02}, r"another optimizer: hyperparameter 'lr' is 0.01 in the checkpoint, 0.02"),
    ({"batch": 30}, r"another training run: setting 'batch_size' is 40 .*, 30 here"),
    ({"seed": 4}, r"setting 'seed' is None in the checkpoint, 4 here"),
    ({"epochs": 1}, r"it is at step 5, past this Trainer's last step \(max_iter 3\): give it "
                    r"more epochs"),
    # what no parameter's shape shows
    ({"network_options": {"dropout_ration": 0.5}}, r"another network: layer 'Dropout1': "
     r"setting 'dropout_ratio' is 0.2 in the checkpoint, 0.5 here"),
    ({"network_options": {"weight_decay_lambda": 0.1}},
     r"another network: weight_decay_lambda is 0.0 in the checkpoint, 0.1 here"),
    ({"network_options": {"activation": "sigmoid"}}, r"another network: the layers are "
     r"\[Affine1 \(Affine\), BatchNorm1 \(BatchNormalization\), Activation_function1 "
     r"\(Relu\), .* here"),
    ({"network_options": {"use_dropout": False}}, r"another network: the layers are .*"
     r"Dropout1 \(Dropout\).* in the checkpoint"),
])
def test_another_runs_checkpoint_is_refused_naming_the_difference(saved, change, match):
    assert_refused(make_trainer(saved, **change), saved, match)


@pytest.mark.parametrize("change", [
    lambda x, t, xt, tt: (x, t, xt + 1e-3, tt),                 # other test images
    lambda x, t, xt, tt: (x[::-1].copy(), t[::-1].copy(), xt, tt),  # another order
    lambda x, t, xt, tt: (x, (t + 1) % 3, xt, tt),              # other labels
], ids=["test-images", "order", "labels"])
def test_other_data_of_the_same_sizes_is_refused(saved, change):
    trainer = make_trainer(saved)
    (trainer.x_train, trainer.t_train, trainer.x_test,
     trainer.t_test) = change(trainer.x_train, trainer.t_train, trainer.x_test, trainer.t_test)
    assert_refused(trainer, saved, r"another training run: (x|t)_(train|test) holds other values")


@pytest.mark.parametrize("change", [
    lambda x, t: (x, t.astype(np.int32)),             # labels of another integer type
    lambda x, t: (x, t.astype(np.uint8)),             # ... and another
    lambda x, t: (x.astype(x.dtype.newbyteorder(">")), t),  # big-endian images
    lambda x, t: (np.asfortranarray(x), t),           # another memory layout
], ids=["int32-labels", "uint8-labels", "big-endian", "fortran"])
def test_the_same_values_in_another_layout_resume(saved, change):
    trainer = make_trainer(saved)
    trainer.x_train, trainer.t_train = change(trainer.x_train, trainer.t_train)
    trainer.train()
    assert trainer.current_iter == trainer.max_iter


def test_images_of_another_dtype_are_named(saved):
    trainer = make_trainer(saved)
    trainer.x_test = trainer.x_test.astype(np.float32)
    assert_refused(trainer, saved, r"another training run: x_test is float64 \(40, 6\) in the "
                                   r"checkpoint, float32 \(40, 6\) here")


def test_a_path_through_a_linked_folder_and_dotdot_is_where_open_puts_it(tmp_path):
    # "link/../run.ckpt" is beside the link's target, as the kernel resolves it, not beside
    # the link (the folder check read the path as text)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "zz").mkdir()  # only beside the target: tmp_path has no zz
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")
    trainer = make_trainer(str(tmp_path / "link" / ".." / "zz" / "run.ckpt"), epochs=1)
    trainer.train()
    assert (tmp_path / "a" / "zz" / "run.ckpt").exists()


def _without(section, key):
    return lambda header: header[section].pop(key)


@pytest.mark.parametrize("edit", [_without("network", "structure"),
                                  _without("training", "data")], ids=["structure", "data"])
def test_a_checkpoint_written_before_a_check_was_recorded_still_resumes(saved, edit):
    rewrite(saved, header_edit=edit)
    trainer = make_trainer(saved)
    trainer.train()
    assert trainer.current_iter == trainer.max_iter


def test_another_mode_is_refused(saved):
    with fastconv.using_mode("fast"):
        trainer = make_trainer(saved)
    assert_refused(trainer, saved, r"another training run: setting 'mode' is 'parity' in the "
                                   r"checkpoint, 'fast' here.*another network: parameter 'W1' "
                                   r"is float64 \(6, 10\) in the checkpoint, float32")


@pytest.mark.parametrize("mode, optimizer, match", [
    ("fast", "adam", r"setting 'mode' is 'parity' in the checkpoint, 'fast' here"),
    ("parity", "sgd", r"another optimizer: the 'Adam' optimizer, not 'SGD'"),
    ("fast", "sgd", r"setting 'mode' is 'parity'.*the 'Adam' optimizer, not 'SGD'"),
])
def test_a_large_checkpoint_of_another_mode_or_optimizer_is_refused_naming_it(
        tmp_path, mode, optimizer, match):
    # parameters outweigh the header allowance here: float64 Adam state makes the file larger
    # than a float32 or SGD checkpoint of the network can be, yet the header names why
    path = tmp_path / "run.ckpt"
    trainer = make_trainer(path, hidden=(600, 600))
    trainer.max_iter = 2
    trainer.train()
    with fastconv.using_mode(mode):
        other = make_trainer(path, optimizer=optimizer, hidden=(600, 600))
    assert path.stat().st_size > 8 * (1 << 20)
    assert_refused(other, path, match)


def rewrite(path, header_edit=None, members=None, compress=False):
    """Copy the checkpoint at ``path`` with its header edited and members replaced/added."""
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(contents["header.json"])
    if header_edit is not None:
        header_edit(header)
    contents["header.json"] = json.dumps(header).encode()
    contents.update(members or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else
                         zipfile.ZIP_STORED) as archive:
        for name, blob in contents.items():
            archive.writestr(name, blob)


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def forged_header(shape, dtype):
    """A .npy member whose header claims ``shape``/``dtype`` with almost no data behind it."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                 "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 64


def set_in(keys, value):
    def edit(header):
        node = header
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return edit


HOSTILE = {
    "object array": dict(members={"params/W1.npy": npy_bytes(
        np.array([object()] * 60, dtype=object).reshape(6, 10), allow_pickle=True)}),
    "huge shape": dict(members={"lists/train_loss.npy": forged_header((2**40,), np.float64)}),
    "wrong dtype": dict(members={"params/b1.npy": npy_bytes(np.zeros(10, np.int64))}),
    "truncated data": dict(members={"params/W1.npy": npy_bytes(np.zeros((6, 10)))[:-8]}),
    "extra member": dict(members={"evil.npy": npy_bytes(np.zeros(3))}),
    "compressed": dict(compress=True),
    "NaN in header": dict(header_edit=set_in(["progress", "epoch_time"], float("nan"))),
    "bad counter": dict(header_edit=set_in(["progress", "current_epoch"], 9)),
    "bad rng pos": dict(header_edit=set_in(["rng", "legacy", "pos"], 10**6)),
    "generator where none was": dict(header_edit=set_in(["rng", "generator"], {"x": 1})),
    "other format": dict(header_edit=set_in(["format"], "something-else")),
    "future version": dict(header_edit=set_in(["version"], 2)),
    "state shape": dict(header_edit=set_in(["network", "state", "running_mean1"],
                                           [[11], "<f8"])),
    "optimizer state flag": dict(header_edit=set_in(["optimizer", "state"], {"m": "yes"})),
    "state dtype": dict(header_edit=set_in(["network", "state", "running_mean1"],
                                           [[10], "<f4"]),
                        members={"state/running_mean1.npy": npy_bytes(np.ones(10, np.float32))}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_or_malformed_files_are_refused_with_nothing_changed(saved, case):
    rewrite(saved, **HOSTILE[case])
    assert_refused(make_trainer(saved), saved, r"checkpoint '.*run\.ckpt'")


def test_oversized_file_is_refused_before_reading(saved):
    with open(saved, "ab") as handle:
        handle.write(b"\0" * (checkpoint._size_limit(make_trainer(saved)) + 1))
    assert_refused(make_trainer(saved), saved, r"bytes, more than a checkpoint")


def test_not_a_zip_is_refused(saved):
    saved.write_bytes(b"\x80\x04K\x01.")  # a pickle
    assert_refused(make_trainer(saved), saved, r"not a .*zip archive")


def test_unsupported_zip_version_is_refused(saved):
    # zipfile raises NotImplementedError for a "version needed to extract" above 6.3
    blob = bytearray(saved.read_bytes())
    entry = blob.index(b"PK\x01\x02")  # the first central directory entry
    blob[entry + 6:entry + 8] = (64).to_bytes(2, "little")
    saved.write_bytes(bytes(blob))
    assert_refused(make_trainer(saved), saved, r"not a readable zip archive")


def test_missing_folder_is_named_before_training(tmp_path):
    trainer = make_trainer(tmp_path / "no" / "such" / "run.ckpt")
    with pytest.raises(FileNotFoundError, match="checkpoint folder .*no/such"):
        trainer.train()
    assert trainer.current_iter == 0


def test_checkpoint_needs_a_known_optimizer(tmp_path):
    class Plain:
        def update(self, params, grads):
            pass
    np.random.seed(0)
    network = MultiLayerNetExtend(6, [4], 3)
    with pytest.raises(TypeError, match="checkpoint= needs one of fastconv's optimizers"):
        Trainer(network, *data(), optimizer=Plain(), checkpoint=tmp_path / "c")


def test_damaged_bytes_give_a_checkpoint_error_or_a_clean_load(tmp_path):
    """Any byte of the file changed: refused with CheckpointError (or loaded), never a crash
    or another exception."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    path = tmp_path / "run.ckpt"
    trainer = make_trainer(path)
    trainer.max_iter = 5
    trainer.train()
    original = path.read_bytes()

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(st.tuples(st.integers(0, len(original) - 1), st.integers(0, 255)),
                    min_size=1, max_size=4))
    def check(changes):
        damaged = bytearray(original)
        for position, value in changes:
            damaged[position] = value
        path.write_bytes(bytes(damaged))
        fresh = make_trainer(path)
        try:
            fresh.load_checkpoint()
        except CheckpointError:
            assert fresh.current_iter == 0
        else:
            assert fresh.current_iter == 5

    check()


HOLDER = """
import sys, time
from fastconv.fileio import hold_lock, lock_file_for
hold_lock(lock_file_for(sys.argv[1]), "checkpoint")
print("held", flush=True)
time.sleep(300)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no flock: checkpoints are not locked")
def test_a_checkpoint_in_use_by_another_run_is_refused_and_a_kill_frees_it(tmp_path):
    # two runs of one checkpoint file removed each other's temporary files (a crash at
    # os.replace) and resumed from each other's saves
    path = tmp_path / "run.ckpt"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        # a holder that hung before taking the lock fails this test, not the suite
        ready, _, _ = select.select([holder.stdout], [], [], 120)
        assert ready and holder.stdout.readline() == "held\n"
        trainer = make_trainer(path)
        before = np.random.get_state()[1].copy()
        with pytest.raises(CheckpointError, match="is in use by another training run"):
            trainer.train()
        assert trainer.current_iter == 0 and not path.exists()
        np.testing.assert_array_equal(np.random.get_state()[1], before)
        # and within one process: a second Trainer of the same file while the first trains
        inner = []
        first = make_trainer(tmp_path / "own.ckpt", epochs=1)
        second = make_trainer(tmp_path / "own.ckpt", epochs=1)
        original = first.train_step

        def step_then_start_the_second():
            original()
            if not inner:
                with pytest.raises(CheckpointError, match="in use by another training run"):
                    second.train()
                inner.append("refused")
        first.train_step = step_then_start_the_second
        first.train()
        assert inner == ["refused"] and first.current_iter == first.max_iter
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    trainer = make_trainer(path)  # the kill released the file
    trainer.train()
    assert trainer.current_iter == trainer.max_iter and path.exists()
