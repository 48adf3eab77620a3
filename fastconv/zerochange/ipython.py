"""``%load_ext fastconv``: serve the book's modules in an IPython shell or Jupyter kernel.

It also adds the line magic ``%fastconv``, the notebook's counterpart of the command line's
options: ``%fastconv --fast`` / ``--parity`` switch the mode, ``%fastconv --report`` prints
which names fastconv serves, and ``%fastconv --checkpoint DIR`` makes the notebook's training
resumable: the Trainers made from then on save to ``DIR/trainer-<n>.ckpt``, numbered in the
order they are made, and ``np.random`` is set to the state kept in DIR (the state at that
line, on the first run). After a crash or a restart, Restart & Run All makes the same
Trainers in the same order, and each resumes from its file.
"""
import argparse
import os
import shlex

from IPython.core.error import UsageError  # IPython shows its message without a traceback

USAGE = "%fastconv [--fast | --parity] [--checkpoint DIR | --no-checkpoint] [--report]"


def load_ipython_extension(ipython):
    from fastconv import zerochange
    zerochange.install()
    ipython.register_magic_function(fastconv_magic, magic_kind="line", magic_name="fastconv")


def unload_ipython_extension(ipython):
    from fastconv import zerochange
    from fastconv.zerochange import resume
    zerochange.uninstall()
    resume.stop()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # not SystemExit: the kernel would report that as a crash
        raise UsageError(f"{message}; usage: {USAGE}")


def _parser():
    parser = _Parser(prog="%fastconv", usage=USAGE, add_help=False)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true")
    mode.add_argument("--parity", action="store_true")
    checkpoints = parser.add_mutually_exclusive_group()
    checkpoints.add_argument("--checkpoint", metavar="DIR")
    checkpoints.add_argument("--no-checkpoint", action="store_true")
    parser.add_argument("--report", action="store_true")
    return parser


def fastconv_magic(line):
    """%fastconv [--fast | --parity] [--checkpoint DIR | --no-checkpoint] [--report]"""
    try:
        words = shlex.split(line)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{exc}; usage: {USAGE}") from None
    options = _parser().parse_args(words)
    from fastconv import mode, trainer, zerochange
    if not words:
        folder = trainer.run_checkpoint_folder()
        print(f"fastconv: {mode.get_mode()} mode; "
              + (f"Trainers save to {folder}" if folder else "no --checkpoint folder"))
    if options.checkpoint is not None:
        from fastconv.checkpoint import CheckpointError
        from fastconv.zerochange import resume
        folder = os.path.abspath(os.path.expanduser(options.checkpoint))
        try:
            resume.start(folder)  # changes nothing when it raises
        except (OSError, CheckpointError) as exc:
            raise UsageError(f"--checkpoint: {exc}") from None
        print(f"fastconv: Trainers made from now on save to {folder}; after a restart, "
              f"Run All resumes each from its file")
    if options.no_checkpoint:
        from fastconv.zerochange import resume
        resume.stop()
        print("fastconv: Trainers made from now on save no checkpoint")
    if options.fast or options.parity:
        mode.set_mode("fast" if options.fast else "parity")
    if options.report:
        print(zerochange.report())
