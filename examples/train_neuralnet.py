"""Chapter 5: train the two-layer net (784-50-10) with backprop, timed.

The book's ch05/train_neuralnet.py: one-hot MNIST labels, mini-batches of 100 drawn with
replacement, plain SGD with learning rate 0.1 for 10000 iterations, and the accuracy on the
whole training and test sets at every epoch (every train_size / batch_size iterations).

The loss curve records the mini-batch loss of each step's own forward pass (the network's
``last_loss``), not a second forward pass after the update as in the book.

    python examples/train_neuralnet.py             # the book's 10000 iterations
    python examples/train_neuralnet.py --epochs 5  # 3000 iterations
"""
import _common as common  # first: selects matplotlib's Agg backend
import matplotlib.pyplot as plt
import numpy as np

from fastconv.optimizer import SGD
from fastconv.two_layer_net import TwoLayerNet

BATCH_SIZE = 100
LEARNING_RATE = 0.1


def main(argv=None):
    parser = common.make_parser(__doc__, iters=True)
    args = common.parse_args(parser, defaults={"iters": 10000}, quick={"iters": 20},
                             argv=argv)

    (x_train, t_train), (x_test, t_test) = common.load_data(
        args, normalize=True, one_hot_label=True)
    train_size = x_train.shape[0]
    iters_num = common.iterations(args, train_size, BATCH_SIZE)
    iter_per_epoch = common.iters_per_epoch(train_size, BATCH_SIZE)

    network = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, dtype=args.dtype)
    optimizer = SGD(lr=LEARNING_RATE)
    print(f"TwoLayerNet 784-50-10, SGD lr={LEARNING_RATE}, batch {BATCH_SIZE}, "
          f"{iters_num} iterations ({iter_per_epoch} per epoch)")

    clock = common.Clock()
    train_loss_list, train_acc_list, test_acc_list = [], [], []
    for i in range(iters_num):
        with clock.step(BATCH_SIZE):
            batch_mask = np.random.choice(train_size, BATCH_SIZE)
            grads = network.gradient(x_train[batch_mask], t_train[batch_mask])
            optimizer.update(network.params, grads)
        train_loss_list.append(float(network.last_loss))

        if i % iter_per_epoch == 0:
            train_acc = network.accuracy(x_train, t_train)
            test_acc = network.accuracy(x_test, t_test)
            train_acc_list.append(train_acc)
            test_acc_list.append(test_acc)
            print(f"epoch {len(train_acc_list)} (iteration {i}): train acc {train_acc:.4f}, "
                  f"test acc {test_acc:.4f} | {clock.lap_text()}")

    final_acc = network.accuracy(x_test, t_test)
    print(f"Final test accuracy: {final_acc:.4f}")

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(np.arange(len(train_loss_list)), train_loss_list, linewidth=0.5)
    ax_loss.set_xlabel("iteration")
    ax_loss.set_ylabel("mini-batch loss")
    epochs = np.arange(len(train_acc_list))
    ax_acc.plot(epochs, train_acc_list, marker="o", label="train acc")
    ax_acc.plot(epochs, test_acc_list, marker="s", linestyle="--", label="test acc")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.0)
    ax_acc.legend(loc="lower right")
    fig.suptitle("ch05 TwoLayerNet, SGD lr 0.1")
    common.save_figure(fig, args, "train_neuralnet.png")
    clock.report()


if __name__ == "__main__":
    main()
