"""Zero-change mode: the book's scripts, notebooks and course forks, unchanged, on fastconv.

``python -m fastconv SCRIPT`` (see :mod:`fastconv.zerochange.runner`), ``%load_ext fastconv``
in IPython or Jupyter, or ``fastconv.install()`` in code. Afterwards the book's module names
(``common.*``, ``dataset.mnist``, ``data.mnist``, ``two_layer_net``, ``simple_convnet``,
``deep_convnet``, ...) still load the user's own files, and fastconv then takes over each
name it can show to be equivalent (:mod:`fastconv.zerochange.rules`); the rest stays the
user's. ``report()`` says which is which.
"""
import os
import sys

from fastconv import mode as _mode
from fastconv.zerochange import finder as _finder
from fastconv.zerochange import plots as _plots

__all__ = ["install", "uninstall", "is_installed", "report", "main"]

CHILD_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child")
ENV_FLAG = "FASTCONV_ZERO_CHANGE"


def install(fast=None, plots_dir=None, plots_prefix="figure", workers=True):
    """Serve the book's module names from now on (modules imported later).

    fast: True selects fast mode, False parity mode, None leaves the mode as it is.
    plots_dir: with no display, ``plt.show()`` saves figures there as PNG files.
    workers: worker processes started later (multiprocessing, subprocess) do the same,
    through the environment (a ``sitecustomize`` on PYTHONPATH and FASTCONV_* variables).
    """
    if fast is not None:
        _mode.set_mode("fast" if fast else "parity")
    if plots_dir is not None:
        _plots.capture(plots_dir, plots_prefix)
    _finder.install_finder()
    if workers:
        _export_to_workers(plots_dir)


def _export_to_workers(plots_dir):
    os.environ[ENV_FLAG] = "1"
    os.environ[_mode.ENV_VAR] = _mode.get_mode()
    if plots_dir is not None:
        os.environ["FASTCONV_PLOTS"] = os.path.abspath(plots_dir)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if CHILD_DIR not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([CHILD_DIR] + paths)


def uninstall():
    """Stop serving modules imported from now on (modules already served stay served)."""
    _finder.uninstall_finder()
    os.environ.pop(ENV_FLAG, None)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
             if p and p != CHILD_DIR]
    if paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        os.environ.pop("PYTHONPATH", None)


def is_installed():
    return _finder._finder in sys.meta_path


def report():
    """Per user module served so far: the names fastconv serves and those kept, with why."""
    lines = [f"fastconv zero-change report (mode: {_mode.get_mode()})"]
    if not _finder.reports:
        lines.append("  no book module was imported")
    for module_report in _finder.reports:
        lines += module_report.lines()
    return "\n".join(lines)


def main(argv=None):
    """``python -m fastconv [--fast] [--report] [--plots DIR] [--checkpoint DIR] SCRIPT
    [ARGS...]``; the exit code."""
    from fastconv.zerochange.runner import main as run_main
    return run_main(argv)
