"""``python -m fastconv [--fast] [--report] [--plots DIR] [--checkpoint DIR] SCRIPT [ARGS...]``.

Runs SCRIPT as ``__main__`` the way ``python SCRIPT ARGS...`` would (same ``sys.argv``,
``sys.path[0]`` the script's folder, same exit code, the script's own traceback), with the
book's modules served by fastconv.
"""
import argparse
import os
import runpy
import sys
import traceback

USAGE = ("python -m fastconv [--fast] [--report] [--plots DIR] [--checkpoint DIR] SCRIPT "
         "[ARGS...]")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastconv", usage=USAGE,
        description="Run a script of 'Deep Learning from Scratch' unchanged, with the book's "
                    "modules (common.*, dataset.mnist, the chapters' networks) served by "
                    "fastconv wherever they behave as fastconv's.")
    parser.add_argument("--fast", action="store_true",
                        help="fast mode: float32 networks, one forward pass per training step "
                             "(default: parity mode, the book's numbers)")
    parser.add_argument("--report", action="store_true",
                        help="print to stderr, at exit, which names fastconv served in each "
                             "module and which stayed the user's, and why")
    parser.add_argument("--plots", metavar="DIR", default=None,
                        help="with no display, save the figures that plt.show() would show "
                             "here as PNG (default: ./fastconv-plots)")
    parser.add_argument("--checkpoint", metavar="DIR", default=None,
                        help="make the run resumable: the script's Trainers save their state "
                             "in DIR, and the same command run again after a stop or a kill "
                             "goes on from there, to the same numbers as a run never stopped")
    parser.add_argument("script", metavar="SCRIPT", help="the Python file to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="arguments for the script")
    return parser


def main(argv=None):
    try:
        options = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    script = os.path.abspath(options.script)
    if not os.path.isfile(script):
        print(f"python -m fastconv: can't open file {options.script!r}: no such file",
              file=sys.stderr)
        return 2
    import fastconv.zerochange as zerochange
    stem = os.path.splitext(os.path.basename(script))[0]
    zerochange.install(fast=True if options.fast else None,
                       plots_dir=options.plots or os.path.join(os.getcwd(), "fastconv-plots"),
                       plots_prefix=stem)
    if options.checkpoint is not None:
        from fastconv.checkpoint import CheckpointError
        from fastconv.zerochange import resume
        try:
            resume.start(os.path.abspath(options.checkpoint))
        except (OSError, CheckpointError) as exc:
            print(f"python -m fastconv: --checkpoint: {exc}", file=sys.stderr)
            return 2
    sys.argv = [options.script] + options.args
    # the folder of the file itself, a symbolic link resolved, as the interpreter sets it
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    try:
        return _run(script)
    finally:
        if options.checkpoint is not None:
            note = resume.finish(options.checkpoint)
            if note:
                print(note, file=sys.stderr)
        if options.report:
            sys.stdout.flush()
            print(zerochange.report(), file=sys.stderr)


def _run(script):
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt as exc:
        # left to the interpreter, which runs the exit handlers and then ends the process by
        # SIGINT as a plain run does; only the traceback it prints is cut to the script's
        _report_from_script_frames(exc, script)
        raise
    except BaseException as exc:
        _print_script_traceback(exc, script)
        return 1
    return 0


def _exit_code(code):
    """What the interpreter makes of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _from_script_frames(tb, script):
    """The traceback from the script's first frame on, not runpy's and the runner's."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename != script:
        first = first.tb_next
    return first or tb


def _report_from_script_frames(exc, script):
    """Has the interpreter's report of exc at exit (``sys.excepthook``, the script's or
    Python's) start at the script's first frame; any other exception is reported whole."""
    hook = sys.excepthook

    def report(kind, error, tb):
        sys.excepthook = hook
        if error is exc:
            # Python's own hook prints the exception's __traceback__, not the one passed
            tb = _from_script_frames(tb, script)
            error.__traceback__ = tb
        hook(kind, error, tb)
    sys.excepthook = report


def _print_script_traceback(exc, script):
    """What a plain run prints: the script's ``sys.excepthook`` if it set one, else the
    traceback from the script's first frame on, not runpy's."""
    tb = _from_script_frames(exc.__traceback__, script)
    hook = sys.excepthook
    if hook is not sys.__excepthook__:
        try:
            hook(type(exc), exc, tb)
            return
        except BaseException as hook_error:  # as the interpreter does: report both
            print("Error in sys.excepthook:", file=sys.stderr)
            traceback.print_exception(type(hook_error), hook_error, hook_error.__traceback__)
            print("\nOriginal exception was:", file=sys.stderr)
    traceback.print_exception(type(exc), exc, tb)
