"""Chapter 8: train DeepConvNet on MNIST, timed.

The book's ch08/train_deepnet.py: DeepConvNet (six 3x3 convolutions with ReLU in three
pooled pairs, then Affine 50 - ReLU - Dropout - Affine 10 - Dropout, He init) trained by the
Trainer with Adam (lr 0.001) on mini-batches of 100 for 20 epochs, the accuracy checked on
1000 training and 1000 test images per epoch and on the whole test set at the end. The
parameters are saved to deep_convnet_params.pkl in the run's folder and the accuracy
curves to train_deepnet.png.

    python examples/train_deepnet.py              # the book's 20 epochs (13-16 minutes on 2 cores)
    python examples/train_deepnet.py --epochs 1 --train-size 6000
"""
import _common as common  # first: selects matplotlib's Agg backend

import fastconv
from fastconv.deep_convnet import DeepConvNet


def main(argv=None):
    parser = common.make_parser(__doc__, checkpoint=True)
    args = common.parse_args(parser, defaults={"epochs": 20},
                             quick={"epochs": 1, "train_size": 300, "test_size": 200},
                             argv=argv,
                             outputs=["deep_convnet_params.pkl", "train_deepnet.png"])

    data = common.load_data(args, flatten=False)
    network = DeepConvNet(dtype=args.dtype)
    print(f"DeepConvNet, Adam lr 0.001, batch 100, {common.count(args.epochs, 'epoch')}")

    title = f"ch08 DeepConvNet, Adam lr 0.001, batch 100 ({fastconv.get_mode()} mode)"
    common.train_book_style(args, network, data, title,
                            params_name="deep_convnet_params.pkl", plot_name="train_deepnet.png")


if __name__ == "__main__":
    main()
