"""Chapter 6: overfitting 300 images, held back by Dropout, timed.

The book's ch06/overfit_dropout.py: the first 300 training images, a 7-layer ReLU net
(784-100x6-10) with Dropout (ratio 0.2) after every hidden layer, trained by the Trainer
(SGD lr 0.01, mini-batches of 100) for 301 epochs; the training and test accuracy are
plotted per epoch. ``--no-dropout`` shows the overfitting without it.

    python examples/overfit_dropout.py                  # the book's 301 epochs
    python examples/overfit_dropout.py --no-dropout
"""
import _common as common  # first: selects matplotlib's Agg backend

from fastconv.multi_layer_net_extend import MultiLayerNetExtend
from fastconv.trainer import Trainer


def main(argv=None):
    parser = common.make_parser(__doc__, checkpoint=True)
    parser.add_argument("--no-dropout", dest="use_dropout", action="store_false",
                        help="train without Dropout")
    parser.add_argument("--dropout-ratio", type=float, default=0.2,
                        help="Dropout ratio (default: 0.2, as in the book)")
    args = common.parse_args(parser, defaults={"epochs": 301, "train_size": 300},
                             quick={"epochs": 3}, argv=argv, outputs=["overfit_dropout.png"])

    (x_train, t_train), (x_test, t_test) = common.load_data(args, normalize=True)
    network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100, 100, 100, 100, 100, 100],
                                  output_size=10, use_dropout=args.use_dropout,
                                  dropout_ration=args.dropout_ratio, dtype=args.dtype)
    print(f"MultiLayerNetExtend 784-100x6-10, dropout "
          f"{args.dropout_ratio if args.use_dropout else 'off'}, SGD lr 0.01, batch 100, "
          f"{common.count(args.epochs, 'epoch')}")

    clock = common.Clock()
    log = common.TrainerLog()
    trainer = Trainer(network, x_train, t_train, x_test, t_test,
                      epochs=args.epochs, mini_batch_size=100,
                      optimizer='sgd', optimizer_param={'lr': 0.01}, verbose=True,
                      seed=args.seed, log=log, **common.trainer_options(args))
    log.trainer = trainer
    trainer.train()
    log.flush()
    common.add_trainer_time(clock, trainer)

    title = (f"ch06 overfitting {common.count(len(x_train), 'image')}: "
             + (f"Dropout {args.dropout_ratio}" if args.use_dropout else "without Dropout")
             + ", SGD lr 0.01, batch 100")
    common.plot_accuracy(args, {"train": trainer.train_acc_list, "test": trainer.test_acc_list},
                         title, "overfit_dropout.png", final_test_acc=trainer.final_test_acc)
    clock.report()


if __name__ == "__main__":
    main()
