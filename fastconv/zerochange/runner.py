"""``python -m fastconv [--fast] [--report] [--plots DIR] [--checkpoint DIR] SCRIPT [ARGS...]``.

Runs SCRIPT as ``__main__`` the way ``python SCRIPT ARGS...`` would (same ``sys.argv``,
``sys.path[0]`` the script's folder, same exit code, the script's own traceback), with the
book's modules served by fastconv.
"""
import argparse
import atexit
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
    parser.add_argument("script", metavar="SCRIPT",
                        help="the Python file (or a folder with a __main__.py) to run")
    extra = parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                                help="arguments for the script")
    extra.required = False  # (argparse marks a REMAINDER required, and would name it missing)
    return parser


def main(argv=None):
    try:
        options = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # --help or a usage error: argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    script = os.path.abspath(options.script)
    if os.path.isdir(script):
        # a folder with a __main__.py, as the interpreter runs one
        if not os.path.isfile(os.path.join(script, "__main__.py")):
            print(f"python -m fastconv: can't find '__main__' module in {options.script!r}",
                  file=sys.stderr)
            return 1
    elif not os.path.isfile(script):
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
    # (a folder run as SCRIPT: the folder)
    sys.path[0] = (script if os.path.isdir(script)
                   else os.path.dirname(os.path.realpath(script)))
    # at exit: after the interpreter has printed any traceback and waited for the script's
    # threads, and after the script's own exit handlers (registered later, they run first),
    # whose Trainers and served calls count too; before resume's handler, registered earlier,
    # ends the run
    atexit.register(_last_words, options)
    return _run(script)


def _last_words(options):
    """The runner's notes on the run, at exit."""
    import fastconv.zerochange as zerochange
    if options.checkpoint is not None:
        from fastconv.zerochange import resume
        note = resume.finish(options.checkpoint)
        if note:
            print(note, file=_stderr())
    if options.report:
        if sys.stdout is not None:
            sys.stdout.flush()
        print(zerochange.report(), file=_stderr())


def _run(path):
    # the file whose frames a traceback starts from: a folder's __main__.py
    script = os.path.join(path, "__main__.py") if os.path.isdir(path) else path
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt as exc:
        # left to the interpreter, which runs the exit handlers and then ends the process by
        # SIGINT as a plain run does; only what it prints is cut to the script's frames
        _report_at_exit(exc, script)
        raise
    except BaseException as exc:
        failed = exc
    else:
        return 0
    # reported outside the except clause, so that an error of the script's own hook is not
    # chained to the exception it was reporting (the interpreter does not chain them)
    _report(failed, _from_script_frames(failed.__traceback__, script), _excepthook())
    return 1


def _stderr():
    """Where the interpreter writes its messages: the script's sys.stderr, or the process's
    own where the script set it to None."""
    return sys.stderr if sys.stderr is not None else sys.__stderr__


def _exit_code(code):
    """What the interpreter makes of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        text = str(code)
    except Exception:  # a code that cannot be shown: the interpreter prints its newline only
        text = ""
    print(text, file=_stderr())
    return 1


def _from_script_frames(tb, script):
    """The traceback a plain run would show: from the script's first frame on; where no
    frame is the script's (its own SyntaxError, an exception group that ``except*`` raised
    again, a ``.pyc`` or zip app run as SCRIPT), the frames after runpy's, if any."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename != script:
        first = first.tb_next
    if first is not None:
        return first
    after = frame = tb
    while frame is not None:
        if _is_runpy(frame.tb_frame.f_code.co_filename):
            after = frame.tb_next
        frame = frame.tb_next
    return after


def _is_runpy(filename):
    return filename == runpy.__file__ or filename.startswith("<frozen runpy")


_MISSING = object()  # sys.excepthook deleted by the script


def _excepthook():
    return getattr(sys, "excepthook", _MISSING)


def _report(exc, tb, hook):
    """What the interpreter prints for an uncaught exc with traceback tb, where hook is the
    ``sys.excepthook`` it would call (the script's, Python's, or _MISSING)."""
    exc.__traceback__ = tb  # Python's own hook prints the exception's __traceback__
    if hook is _MISSING:
        print("sys.excepthook is missing", file=_stderr())
        traceback.print_exception(type(exc), exc, tb, file=_stderr())
        return
    try:
        hook(type(exc), exc, tb)
    except SystemExit:  # the hook ends the process with its own status, as it would plainly
        raise
    except BaseException as hook_error:
        # as the interpreter does: both, the hook's error from the hook's own frame on
        print("Error in sys.excepthook:", file=_stderr())
        traceback.print_exception(type(hook_error), hook_error,
                                  hook_error.__traceback__.tb_next, file=_stderr())
        print("\nOriginal exception was:", file=_stderr())
        traceback.print_exception(type(exc), exc, tb, file=_stderr())


def _report_at_exit(exc, script):
    """Has the interpreter's report of exc at exit print what a plain run prints; any other
    exception is reported as the interpreter would."""
    hook = _excepthook()

    def report(kind, error, tb):
        if hook is _MISSING:
            del sys.excepthook
        else:
            sys.excepthook = hook
        if error is exc:
            _report(error, _from_script_frames(tb, script), hook)
        else:
            _report(error, tb, hook)
    sys.excepthook = report
