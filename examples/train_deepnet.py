"""Chapter 8: train DeepConvNet on MNIST, timed.

The book's ch08/train_deepnet.py: DeepConvNet (six 3x3 convolutions with ReLU in three
pooled pairs, then Affine 50 - ReLU - Dropout - Affine 10 - Dropout, He init) trained by the
Trainer with Adam (lr 0.001) on mini-batches of 100 for 20 epochs, the accuracy checked on
1000 training and 1000 test images per epoch and on the whole test set at the end. The
parameters are saved to deep_convnet_params.pkl in the output folder and the accuracy
curves to train_deepnet.png.

    python examples/train_deepnet.py              # the book's 20 epochs (hours on 2 cores)
    python examples/train_deepnet.py --epochs 1 --train-size 6000
"""
import _common as common  # first: selects matplotlib's Agg backend

from fastconv.deep_convnet import DeepConvNet
from fastconv.trainer import Trainer


def main(argv=None):
    parser = common.make_parser(__doc__)
    args = common.parse_args(parser, defaults={"epochs": 20},
                             quick={"epochs": 1, "train_size": 300, "test_size": 200},
                             argv=argv)

    (x_train, t_train), (x_test, t_test) = common.load_data(args, flatten=False)
    network = DeepConvNet(dtype=args.dtype)
    print(f"DeepConvNet, Adam lr 0.001, batch 100, {args.epochs} epochs")

    clock = common.Clock()
    log = common.TrainerLog()
    trainer = Trainer(network, x_train, t_train, x_test, t_test,
                      epochs=args.epochs, mini_batch_size=100,
                      optimizer='Adam', optimizer_param={'lr': 0.001},
                      evaluate_sample_num_per_epoch=1000, seed=args.seed, log=log)
    log.trainer = trainer
    trainer.train()
    common.add_trainer_time(clock, trainer)

    params_path = args.out / "deep_convnet_params.pkl"
    network.save_params(str(params_path))
    print(f"Saved Network Parameters: {params_path}")
    print(f"Final test accuracy: {trainer.final_test_acc:.4f}")

    common.plot_accuracy(args, trainer.train_acc_list, trainer.test_acc_list,
                         "ch08 DeepConvNet, Adam lr 0.001", "train_deepnet.png",
                         final_test_acc=trainer.final_test_acc)
    clock.report()


if __name__ == "__main__":
    main()
