"""Started by Python in worker processes of a ``python -m fastconv`` run (this folder is put
on PYTHONPATH): the worker serves the book's modules too, in the same mode. Then the
``sitecustomize`` that this one hides, if any, runs as it would have."""
import importlib.machinery
import importlib.util
import os
import sys


def _start():
    if os.environ.get("FASTCONV_ZERO_CHANGE") == "1":
        import fastconv.zerochange
        fastconv.zerochange.install(plots_dir=os.environ.get("FASTCONV_PLOTS") or None)
    here = os.path.dirname(os.path.abspath(__file__))
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_start()
