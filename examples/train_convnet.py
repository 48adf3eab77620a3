"""Chapter 7: train SimpleConvNet on MNIST, timed. The main job.

The book's ch07/train_convnet.py: SimpleConvNet (conv 30 filters 5x5 - ReLU - 2x2 max pool -
Affine 100 - ReLU - Affine 10, weight init std 0.01) trained by the Trainer with Adam
(lr 0.001) on mini-batches of 100 for 20 epochs, the accuracy checked on 1000 training and
1000 test images per epoch and on the whole test set at the end. The parameters are saved
to params.pkl in the run's folder and the accuracy curves to train_convnet.png.

    python examples/train_convnet.py              # the book's 20 epochs
    python examples/train_convnet.py --epochs 1   # one epoch (600 steps)
"""
import _common as common  # first: selects matplotlib's Agg backend

import fastconv
from fastconv.simple_convnet import SimpleConvNet


def main(argv=None):
    parser = common.make_parser(__doc__, checkpoint=True)
    args = common.parse_args(parser, defaults={"epochs": 20},
                             quick={"epochs": 1, "train_size": 1000, "test_size": 1000},
                             argv=argv, outputs=["params.pkl", "train_convnet.png"])

    data = common.load_data(args, flatten=False)
    network = SimpleConvNet(input_dim=(1, 28, 28),
                            conv_param={'filter_num': 30, 'filter_size': 5, 'pad': 0,
                                        'stride': 1},
                            hidden_size=100, output_size=10, weight_init_std=0.01,
                            dtype=args.dtype)
    print(f"SimpleConvNet, Adam lr 0.001, batch 100, {common.count(args.epochs, 'epoch')}")

    title = f"ch07 SimpleConvNet, Adam lr 0.001, batch 100 ({fastconv.get_mode()} mode)"
    common.train_book_style(args, network, data, title,
                            params_name="params.pkl", plot_name="train_convnet.png")


if __name__ == "__main__":
    main()
