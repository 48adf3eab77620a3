"""The import hook: the book's module names, loaded from the user's files, then served.

A finder placed first on ``sys.meta_path`` recognises the book's module names (``common.*``,
``dataset.mnist``, ``data.mnist``, the chapters' network modules). It lets the usual finders
locate the user's own file, so ``sys.path.append(os.pardir)`` and the tree's layout decide
which file that is, and wraps its loader: the module executes exactly as in a plain run, and
then :func:`fastconv.zerochange.rules.serve` rebinds the names fastconv may take over.
"""
import importlib.abc
import os
import sys

from fastconv.zerochange import datasets, plots, rules

# the user's module name -> the fastconv modules whose names may serve it, in order of trial
BOOK_MODULES = {
    "common.functions": ("fastconv.functions",),
    "common.layers": ("fastconv.layers",),
    "common.util": ("fastconv.util",),
    "common.gradient": ("fastconv.gradient",),
    "common.optimizer": ("fastconv.optimizer",),
    "common.trainer": ("fastconv.trainer",),
    "common.multi_layer_net": ("fastconv.multi_layer_net",),
    "common.multi_layer_net_extend": ("fastconv.multi_layer_net_extend",),
}
# the chapters' and lessons' network modules, found under any package (or none)
CHAPTER_MODULES = {
    # ch04's sigmoid net and ch05's Affine/ReLU net share the name: the probes pick one
    "two_layer_net": ("fastconv.two_layer_net", "fastconv.nets.two_layer_net_ch04"),
    "multi_layer_net": ("fastconv.multi_layer_net",),
    "multi_layer_net_extend": ("fastconv.multi_layer_net_extend",),
    "simple_convnet": ("fastconv.simple_convnet",),
    "deep_convnet": ("fastconv.deep_convnet",),
}
DATASET_MODULES = ("dataset.mnist", "data.mnist")
PYPLOT = "matplotlib.pyplot"  # not served: its show() is wrapped to keep figures (plots.py)

_FASTCONV_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

reports = []  # one rules.ModuleReport per module served, in import order


def targets_for(fullname):
    """The fastconv modules that may serve ``fullname``, or None if it is not a book name."""
    if fullname in BOOK_MODULES:
        return BOOK_MODULES[fullname]
    return CHAPTER_MODULES.get(fullname.rpartition(".")[2])


class BookFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if targets_for(fullname) is None and fullname not in DATASET_MODULES + (PYPLOT,):
            return None
        spec = self._user_spec(fullname, path, target)
        if spec is None or spec.loader is None or spec.origin is None:
            return None
        if fullname == PYPLOT:
            spec.loader = ServingLoader(spec.loader, fullname)
            return spec
        if os.path.abspath(spec.origin).startswith(_FASTCONV_DIR + os.sep):
            return None  # fastconv's own module of that name
        spec.loader = ServingLoader(spec.loader, fullname)
        return spec

    def _user_spec(self, fullname, path, target):
        later = sys.meta_path[sys.meta_path.index(self) + 1:] if self in sys.meta_path else []
        for finder in later:
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                return spec
        return None


class ServingLoader(importlib.abc.Loader):
    """Runs the user's loader, then serves the module. Anything else goes to the user's."""

    def __init__(self, loader, fullname):
        self._loader = loader
        self._fullname = fullname

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        if self._fullname == PYPLOT:
            plots.wrap_show(module)
            return
        try:
            if self._fullname in DATASET_MODULES:
                report = datasets.serve_loader(module)
            else:
                report = rules.serve(module, targets_for(self._fullname))
        except Exception as exc:  # the rule must never break the user's module
            report = rules.ModuleReport(module.__name__, getattr(module, "__file__", "?"), ())
            report.kept["*"] = f"not served: the rule failed ({type(exc).__name__}: {exc})"
        reports.append(report)

    def __getattr__(self, name):  # get_source, get_filename, is_package, ...
        return getattr(self._loader, name)


_finder = BookFinder()


def install_finder():
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall_finder():
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
