"""fastconv.trainer.Trainer: epochs, lists, seeding, the two modes' steps, book-style use,
honest progress figures."""
import functools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv import trainer as trainer_module
from fastconv.nets import MultiLayerNet, MultiLayerNetExtend
from fastconv.nets.deep_convnet import DeepConvNet
from fastconv.optimizer import Adam, Momentum
from fastconv.progress import ETA_MIN_STEADY_STEPS, plural
from fastconv.trainer import Trainer

from conftest import blobs


data = functools.partial(blobs, n_train=230, n_test=70, features=8)


def net(seed=0, dropout=False, dtype=np.float32):
    np.random.seed(seed)
    return MultiLayerNetExtend(8, [16, 16], 3, use_dropout=dropout, dropout_ration=0.2,
                               dtype=dtype)


def quiet(network, epochs=4, **kwargs):
    return Trainer(network, *data(), epochs=epochs, mini_batch_size=100, verbose=False,
                   **kwargs)


def test_epochs_and_list_lengths():
    trainer = quiet(net(), epochs=4, seed=1)
    assert trainer.iter_per_epoch == 3 and trainer.max_iter == 12  # ceil(230 / 100) = 3
    trainer.train()
    assert trainer.current_iter == 12 and trainer.current_epoch == 4
    assert len(trainer.train_loss_list) == 12
    assert len(trainer.train_acc_list) == len(trainer.test_acc_list) == 4
    assert len(trainer.epoch_time_list) == 4 and all(t > 0 for t in trainer.epoch_time_list)
    assert len(trainer.images_per_sec_list) == 4
    assert 0 <= trainer.final_test_acc <= 1


def test_small_training_set_is_one_iteration_per_epoch():
    x, t, xt, tt = data(n_train=30)
    trainer = Trainer(net(), x, t, xt, tt, epochs=3, mini_batch_size=100, verbose=False)
    assert trainer.iter_per_epoch == 1 and trainer.max_iter == 3
    trainer.train()
    assert len(trainer.train_acc_list) == 3 and len(trainer.epoch_time_list) == 3


def test_same_seed_same_run():
    runs = []
    for _ in range(2):
        trainer = quiet(net(dropout=True), seed=123, optimizer='adam',
                        optimizer_param={'lr': 0.01})
        trainer.train()
        runs.append((trainer.train_loss_list, trainer.train_acc_list, trainer.test_acc_list))
    assert runs[0] == runs[1]
    other = quiet(net(dropout=True), seed=124, optimizer='adam', optimizer_param={'lr': 0.01})
    other.train()
    assert other.train_loss_list != runs[0][0]


def test_unseeded_sampling_follows_np_random_like_the_book():
    x, t, xt, tt = data()
    trainer = Trainer(net(), x, t, xt, tt, epochs=1, verbose=False)
    np.random.seed(5)
    expected = np.random.choice(230, 100)
    np.random.seed(5)
    np.testing.assert_array_equal(trainer._sample(), expected)


def test_learns():
    trainer = quiet(net(), epochs=10, seed=0, optimizer='Adam', optimizer_param={'lr': 0.01})
    trainer.train()
    assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]
    assert trainer.final_test_acc > 0.8


def counted_calls(network):
    counts = {"predict": 0, "loss": 0, "gradient": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name in counts:
        setattr(network, name, counting(name, getattr(network, name)))
    network.accuracy = lambda x, t: 0.5  # evaluations would call predict too
    return counts


def test_fast_mode_runs_one_forward_pass_per_step():
    network = net()
    counts = counted_calls(network)
    with fastconv.using_mode("fast"):
        trainer = quiet(network, seed=0)
    trainer.train()  # the mode is the one the Trainer was made in
    assert counts == {"predict": 12, "loss": 0, "gradient": 12}
    assert trainer.train_loss_list[0] == pytest.approx(float(np.log(3)), rel=0.5)


def test_parity_mode_runs_the_books_loss_pass_after_each_update():
    network = net()
    counts = counted_calls(network)
    trainer = quiet(network, seed=0)
    trainer.train()
    assert counts["gradient"] == 12 and counts["loss"] == 12


class ForeignNet:
    """A network without last_loss (e.g. the book's own class): the trainer calls loss()."""

    def __init__(self):
        self.inner = MultiLayerNet(8, [10], 3)
        self.params = self.inner.params
        self.loss_calls = 0

    def gradient(self, x, t):
        grads = self.inner.gradient(x, t)
        self.inner.last_loss = None
        return grads

    def loss(self, x, t):
        self.loss_calls += 1
        return self.inner.loss(x, t)

    def accuracy(self, x, t):
        return self.inner.accuracy(x, t)


def test_foreign_network_falls_back_to_loss():
    foreign = ForeignNet()
    trainer = quiet(foreign, epochs=2, seed=0)
    trainer.train()
    assert foreign.loss_calls == 6 and len(trainer.train_loss_list) == 6


def test_optimizer_by_name_or_instance():
    assert isinstance(quiet(net(), optimizer='MoMentum').optimizer, Momentum)
    adam = Adam(lr=0.002)
    assert quiet(net(), optimizer=adam).optimizer is adam
    with pytest.raises(ValueError, match="unknown optimizer"):
        quiet(net(), optimizer='adamw')
    with pytest.raises(TypeError):
        quiet(net(), optimizer=42)


def test_fast_mode_logs_each_epoch_the_final_accuracy_and_a_bar(capsys):
    lines = []
    with fastconv.using_mode("fast"):
        trainer = Trainer(net(), *data(), epochs=3, mini_batch_size=100, seed=0,
                          evaluate_sample_num_per_epoch=50, log=lines.append)
    trainer.train()
    epoch_lines = [line for line in lines if line.startswith("=== epoch:")]
    assert len(epoch_lines) == 3 and epoch_lines[0].startswith("=== epoch:1, train acc:")
    assert lines[-3].startswith("=====")
    captured = capsys.readouterr()
    assert "loss=" in captured.err and "img/s=" in captured.err  # the tqdm bar
    assert "train loss" not in captured.out + captured.err + "".join(lines)
    assert lines[-2] == "test acc:" + str(trainer.final_test_acc)
    assert lines[-1].startswith("9 steps (3 epochs) in ")  # the timing summary


BOOK_STYLE_SCRIPT = """
import numpy as np
from fastconv.simple_convnet import SimpleConvNet
from fastconv.trainer import Trainer

rng = np.random.default_rng(0)
patterns = rng.random((3, 1, 12, 12))
t_all = rng.integers(0, 3, 360)
x_all = patterns[t_all] + 0.3 * rng.standard_normal((360, 1, 12, 12))
x_train, t_train = x_all[:300], t_all[:300]
x_test, t_test = x_all[300:], t_all[300:]

max_epochs = 3

network = SimpleConvNet(input_dim=(1, 12, 12),
                        conv_param = {'filter_num': 8, 'filter_size': 3, 'pad': 0, 'stride': 1},
                        hidden_size=20, output_size=3, weight_init_std=0.01)

trainer = Trainer(network, x_train, t_train, x_test, t_test,
                  epochs=max_epochs, mini_batch_size=50,
                  optimizer='Adam', optimizer_param={'lr': 0.001},
                  evaluate_sample_num_per_epoch=100)
trainer.train()

network.save_params("params.pkl")
print("Saved Network Parameters!")

restored = SimpleConvNet(input_dim=(1, 12, 12),
                         conv_param = {'filter_num': 8, 'filter_size': 3, 'pad': 0, 'stride': 1},
                         hidden_size=20, output_size=3, weight_init_std=0.01)
restored.load_params("params.pkl")
print("restored acc:" + str(restored.accuracy(x_test, t_test)))
print("lengths", len(trainer.train_acc_list), len(trainer.test_acc_list),
      len(trainer.train_loss_list))
"""


def test_book_style_script(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastconv.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    script = tmp_path / "train_convnet.py"
    script.write_text(textwrap.dedent(BOOK_STYLE_SCRIPT))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert [line for line in out if line.startswith("=== epoch:")][-1].startswith(
        "=== epoch:3, train acc:")
    final = float(out[out.index("=============== Final Test Accuracy ===============") + 1]
                  .split(":")[1])
    assert "Saved Network Parameters!" in out and (tmp_path / "params.pkl").exists()
    assert out[-2] == "restored acc:" + str(final)
    assert out[-1] == "lengths 3 3 18"


# --- book parity: the Trainer against a training loop written the book's way -----------------

def book_training_loop(network, x_train, t_train, x_test, t_test, epochs, batch_size, lr,
                       evaluate_n, lines):
    """The book's Trainer.train, written out plainly (train_size a multiple of batch_size)."""
    optimizer = Adam(lr=lr)
    iter_per_epoch = max(x_train.shape[0] / batch_size, 1)
    losses, epoch = [], 0
    for step in range(int(epochs * iter_per_epoch)):
        mask = np.random.choice(x_train.shape[0], batch_size)
        x_batch, t_batch = x_train[mask], t_train[mask]
        grads = network.gradient(x_batch, t_batch)
        optimizer.update(network.params, grads)
        loss = network.loss(x_batch, t_batch)  # after the update; Dropout draws masks here
        losses.append(loss)
        lines.append("train loss:" + str(loss))
        if step % iter_per_epoch == 0:
            epoch += 1
            train_acc = network.accuracy(x_train[:evaluate_n], t_train[:evaluate_n])
            test_acc = network.accuracy(x_test[:evaluate_n], t_test[:evaluate_n])
            lines.append(f"=== epoch:{epoch}, train acc:{train_acc}, test acc:{test_acc} ===")
    lines.append("=============== Final Test Accuracy ===============")
    lines.append("test acc:" + str(network.accuracy(x_test, t_test)))
    return losses


def tiny_images(n_train=40, n_test=20, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, n_train + n_test)
    x = rng.random((3, 1, 8, 8))[t] + 0.5 * rng.standard_normal((n_train + n_test, 1, 8, 8))
    return x[:n_train], t[:n_train], x[n_train:], t[n_train:]


def tiny_deep_convnet():
    return DeepConvNet(input_dim=(1, 8, 8), hidden_size=10, output_size=3)


def test_parity_mode_matches_the_books_training_loop_on_deep_convnet():
    x, t, xt, tt = tiny_images()
    assert fastconv.get_mode() == "parity"
    np.random.seed(7)
    network = tiny_deep_convnet()
    lines = []
    trainer = Trainer(network, x, t, xt, tt, epochs=3, mini_batch_size=10, optimizer="Adam",
                      optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=15,
                      log=lines.append)
    trainer.train()

    np.random.seed(7)
    book_network = tiny_deep_convnet()
    book_lines = []
    book_losses = book_training_loop(book_network, x, t, xt, tt, epochs=3, batch_size=10,
                                     lr=0.01, evaluate_n=15, lines=book_lines)
    assert trainer.train_loss_list == [float(loss) for loss in book_losses]
    assert lines == book_lines  # the same text, line for line
    assert len(set(trainer.train_loss_list)) > 1
    for key in network.params:
        np.testing.assert_array_equal(network.params[key], book_network.params[key])


def test_parity_prints_the_books_lines_and_no_bar(capsys):
    trainer = Trainer(net(dtype=None), *data(), epochs=2, mini_batch_size=100, seed=0)
    trainer.train()
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("train loss:")] == \
        ["train loss:" + str(loss) for loss in trainer.train_loss_list]
    assert lines[:2] == ["train loss:" + str(trainer.train_loss_list[0]),
                         f"=== epoch:1, train acc:{trainer.train_acc_list[0]}, "
                         f"test acc:{trainer.test_acc_list[0]} ==="]
    assert lines[-2:] == ["=============== Final Test Accuracy ===============",
                          "test acc:" + str(trainer.final_test_acc)]
    assert err == ""


def test_train_runs_until_max_iter_in_all():
    lines = []
    trainer = Trainer(net(), *data(), epochs=2, mini_batch_size=100, seed=0, log=lines.append)
    trainer.train()
    losses = list(trainer.train_loss_list)
    trainer.train()  # nothing left to run: says so, runs no step
    assert trainer.train_loss_list == losses and trainer.current_iter == 6
    assert any("raise max_iter to train on" in line for line in lines)
    trainer.max_iter += 3
    trainer.train()
    assert trainer.current_iter == 9 and len(trainer.train_loss_list) == 9
    assert trainer.optimizer.__class__.__name__ == "SGD"


def test_adam_iter_and_loss_count_agree():
    trainer = quiet(net(), epochs=3, seed=0, optimizer="adam")
    trainer.train()
    assert trainer.optimizer.iter == len(trainer.train_loss_list) == trainer.current_iter


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint"):
        quiet(net(), checkpoint_every=5)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1; got 0"):
        quiet(net(), checkpoint="x.ckpt", checkpoint_every=0)
    with pytest.raises(TypeError, match="epochs must be an integer; got '3'"):
        quiet(net(), epochs="3")
    with pytest.raises(TypeError, match="seed must be an integer; got 2.0"):
        quiet(net(), seed=2.0)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        quiet(net(), checkpoint=3)
    with pytest.raises(ValueError, match="evaluate_sample_num_per_epoch"):
        quiet(net(), evaluate_sample_num_per_epoch=0)
    network = net()
    x, t, xt, tt = data()
    before = np.random.get_state()[1].copy()
    with pytest.raises(ValueError, match="t_train has 5"):
        Trainer(network, x, t[:5], xt, tt, seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # not reseeded


@pytest.mark.parametrize("change, error, message", [
    (lambda d: dict(d, t_test=d["t_test"][:3]), ValueError, "x_test has 70 samples but t_test has 3"),
    (lambda d: dict(d, x_test=d["x_test"][:, :5]), ValueError, "x_test samples must have the shape"),
    (lambda d: dict(d, x_test=None), TypeError, "x_test must be an array of samples"),
    (lambda d: dict(d, x_train=list(d["x_train"])), TypeError, "x_train must be an array"),
    (lambda d: dict(d, x_test=d["x_test"][:0], t_test=d["t_test"][:0]), ValueError,
     "x_test is empty"),
    (lambda d: dict(d, t_train=d["t_train"] + 3), ValueError, r"t labels must lie in \[0, 3\)"),
    (lambda d: dict(d, t_test=d["t_test"].astype(float)), TypeError, "t labels must be integers"),
    (lambda d: dict(d, network=None), TypeError, "network must have gradient"),
    (lambda d: dict(d, optimizer_param=[0.1]), TypeError, "optimizer_param must be a dict"),
])
def test_data_that_cannot_train_is_refused_before_the_first_step(change, error, message):
    # each of these was found only after the first step had updated the params (or drawn a
    # batch from np.random)
    network = net()
    x, t, xt, tt = data()
    args = change(dict(network=network, x_train=x, t_train=t, x_test=xt, t_test=tt,
                       optimizer_param={"lr": 0.1}))
    params = {key: value.copy() for key, value in network.params.items()}
    draws = np.random.get_state()[1].copy()
    with pytest.raises(error, match=message):
        Trainer(args.pop("network"), **args, epochs=1, mini_batch_size=10, verbose=False)
    for key, value in params.items():
        np.testing.assert_array_equal(network.params[key], value)
    np.testing.assert_array_equal(np.random.get_state()[1], draws)


def test_an_optimizer_replaced_by_something_without_update_is_refused_before_the_step():
    trainer = quiet(net(), epochs=1)
    params = {key: value.copy() for key, value in trainer.network.params.items()}
    draws = np.random.get_state()[1].copy()
    trainer.optimizer = object()
    with pytest.raises(TypeError,
                       match=r"Trainer.optimizer must be an object with update\(params, grads\)"):
        trainer.train_step()
    for key, value in params.items():
        np.testing.assert_array_equal(trainer.network.params[key], value)
    np.testing.assert_array_equal(np.random.get_state()[1], draws)


# --- honest progress (issue #18): a fake clock makes the first step slow ----------------------

class FakeTime:
    """Stands in for the time module: perf_counter advances only when told."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def clocked_net(fake, first=5.0, later=0.01):
    network = net()
    real_gradient = network.gradient
    calls = [0]

    def gradient(x, t):
        calls[0] += 1
        fake.now += first if calls[0] == 1 else later
        return real_gradient(x, t)

    network.gradient = gradient
    return network


def test_first_step_apart_and_images_per_sec_of_steady_steps(monkeypatch):
    fake = FakeTime()
    monkeypatch.setattr(trainer_module, "time", fake)
    trainer = quiet(clocked_net(fake), epochs=4, seed=0)  # 3 steps an epoch, batches of 100
    seen_eta = []
    real_step = trainer.train_step

    def step():
        real_step()
        seen_eta.append(trainer.eta)
    trainer.train_step = step
    trainer.train()
    assert trainer.first_step_time == pytest.approx(5.0)
    assert trainer.steady_images_per_sec == pytest.approx(100 / 0.01)
    assert trainer.images_per_sec_list == pytest.approx([100 * 2 / 0.02] + [100 / 0.01] * 3)
    assert trainer.epoch_time_list == pytest.approx([5.02, 0.03, 0.03, 0.03])
    # no ETA until ETA_MIN_STEADY_STEPS steady steps; then the steady pace, not the first step's
    first_eta = ETA_MIN_STEADY_STEPS  # index of the step after that many steady steps
    assert seen_eta[:first_eta] == [None] * first_eta
    assert seen_eta[first_eta] == pytest.approx((12 - first_eta - 1) * 0.01)
    summary = trainer.timing_summary()
    assert summary.startswith("12 steps (4 epochs) in 5.11 s: first step 5.00 s")
    assert summary.endswith("then 10,000 images/s")


def test_fast_bar_shows_first_step_and_no_early_eta(monkeypatch, capsys):
    fake = FakeTime()
    monkeypatch.setattr(trainer_module, "time", fake)
    with fastconv.using_mode("fast"):
        trainer = Trainer(clocked_net(fake), *data(), epochs=1, mini_batch_size=100, seed=0,
                          log=lambda message: None)
    trainer.train()  # 3 steps: too few for an ETA
    err = capsys.readouterr().err
    assert "first step=5.00 s" in err and "eta=" not in err and "remaining" not in err


def test_plurals():
    assert plural(1, "epoch") == "1 epoch" and plural(2, "epoch") == "2 epochs"
    assert plural(0, "step") == "0 steps"
    trainer = quiet(net(), epochs=1, seed=0)
    trainer.iter_per_epoch = trainer.max_iter = 1
    trainer.train()
    assert trainer.timing_summary().startswith("1 step (1 epoch) in ")
