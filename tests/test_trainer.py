"""fastconv.trainer.Trainer: epochs, lists, seeding, one forward pass per step, book-style use."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv
from fastconv.nets import MultiLayerNet, MultiLayerNetExtend
from fastconv.optimizer import Adam, Momentum
from fastconv.trainer import Trainer


def data(n_train=230, n_test=70, features=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 2
    t = rng.integers(0, classes, n_train + n_test)
    x = centers[t] + rng.standard_normal((n_train + n_test, features))
    return x[:n_train], t[:n_train], x[n_train:], t[n_train:]


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


def test_one_forward_pass_per_step():
    network = net()
    counts = {"predict": 0, "loss": 0, "gradient": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name in counts:
        setattr(network, name, counting(name, getattr(network, name)))
    network.accuracy = lambda x, t: 0.5  # evaluations would call predict too
    trainer = quiet(network, seed=0)
    trainer.train()
    assert counts == {"predict": 12, "loss": 0, "gradient": 12}
    assert trainer.train_loss_list[0] == pytest.approx(float(np.log(3)), rel=0.5)


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


def test_verbose_logs_each_epoch_and_the_final_accuracy(capsys):
    lines = []
    trainer = Trainer(net(), *data(), epochs=3, mini_batch_size=100, seed=0,
                      evaluate_sample_num_per_epoch=50, log=lines.append)
    trainer.train()
    epoch_lines = [line for line in lines if line.startswith("=== epoch:")]
    assert len(epoch_lines) == 3 and epoch_lines[0].startswith("=== epoch:1, train acc:")
    assert lines[-2].startswith("=====") and lines[-1] == "test acc:" + str(trainer.final_test_acc)
    captured = capsys.readouterr()
    assert "loss=" in captured.err and "img/s=" in captured.err  # the tqdm bar
    assert "train loss" not in captured.out + captured.err


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
