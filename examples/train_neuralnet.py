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
import matplotlib.ticker
import numpy as np

from fastconv.optimizer import SGD
from fastconv.two_layer_net import TwoLayerNet

BATCH_SIZE = 100
LEARNING_RATE = 0.1


def main(argv=None):
    parser = common.make_parser(__doc__, iters=True)
    # --quick: 500 images make an epoch of 5 steps, so the accuracy panel has 4 epochs to join
    args = common.parse_args(parser, defaults={"iters": 10000},
                             quick={"iters": 20, "train_size": 500}, argv=argv,
                             outputs=["train_neuralnet.png"])

    (x_train, t_train), (x_test, t_test) = common.load_data(
        args, normalize=True, one_hot_label=True)
    train_size = x_train.shape[0]
    iters_num = common.iterations(args, train_size, BATCH_SIZE)
    iter_per_epoch = common.iters_per_epoch(train_size, BATCH_SIZE)

    network = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, dtype=args.dtype)
    optimizer = SGD(lr=LEARNING_RATE)
    print(f"TwoLayerNet 784-50-10, SGD lr={LEARNING_RATE}, batch {BATCH_SIZE}, "
          f"{common.count(iters_num, 'iteration')} ({iter_per_epoch} per epoch)")

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
            print(f"epoch {len(train_acc_list) - 1} (iteration {i}): train acc {train_acc:.4f}, "
                  f"test acc {test_acc:.4f} | {clock.lap_text()}")

    final_acc = network.accuracy(x_test, t_test)
    print(f"Final test accuracy: {final_acc:.4f}")

    # The accuracy gets a panel only when there are two epochs to join (a lone point says
    # less than the final figure in the title); a zoomed one when the curves crowd near 1.
    curves = {"train": train_acc_list, "test": test_acc_list}
    zoom_from = common.crowded_tail(curves)
    panels = 1 + (len(train_acc_list) >= 2) + (zoom_from is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2), squeeze=False,
                             layout="constrained")
    ax_loss = axes[0, 0]
    ax_loss.plot(np.arange(len(train_loss_list)), train_loss_list, linewidth=0.5,
                 label="mini-batch loss")
    ax_loss.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_loss.set_xlabel("iterations")
    ax_loss.set_ylabel("mini-batch loss")
    ax_loss.set_title("loss of each step")
    ax_loss.grid(True, alpha=0.3)
    if panels >= 2:
        common.draw_accuracy(axes[0, 1], curves)
        axes[0, 1].set_title("accuracy on the whole training and test sets")
    if zoom_from is not None:
        common.draw_accuracy(axes[0, 2], curves, start=zoom_from)
        axes[0, 2].set_title(f"epochs {zoom_from}-{len(train_acc_list) - 1}, zoomed")
    fig.suptitle(f"ch05 TwoLayerNet 784-50-10, SGD lr {LEARNING_RATE}, batch {BATCH_SIZE}: "
                 f"final test accuracy {final_acc:.4f}")
    if panels >= 2:
        common.legend_below(fig, axes[0, 1].get_legend_handles_labels(), ncol=2)
    common.save_figure(fig, args, "train_neuralnet.png")
    clock.report()


if __name__ == "__main__":
    main()
