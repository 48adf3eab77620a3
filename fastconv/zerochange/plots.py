"""Keeping the figures of a run with no display: ``plt.show()`` saves them as PNG files.

Without a display, matplotlib falls back to a non-interactive backend and ``plt.show()``
shows nothing. When pyplot is imported (now or later) its ``show`` is wrapped: on a
non-interactive backend it saves every open figure to the plots folder, says where on
stderr, and closes them, as closing a window would. With a display it shows as usual.
"""
import os
import sys

_NON_INTERACTIVE = ("agg", "pdf", "ps", "svg", "pgf", "cairo", "template")
_state = {"folder": None, "prefix": "figure", "count": 0}


def has_display():
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def capture(folder, prefix):
    """Save shown figures into ``folder`` as ``<prefix>-<n>.png`` from now on."""
    _state.update(folder=os.path.abspath(folder), prefix=prefix, count=0)
    if not has_display() and not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = "Agg"  # what matplotlib would pick, without the probing
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        wrap_show(pyplot)


def wrap_show(pyplot):
    if _state["folder"] is None or getattr(pyplot.show, "saves_figures", False):
        return
    original = pyplot.show

    def show(*args, **kwargs):
        import matplotlib
        if matplotlib.get_backend().lower() not in _NON_INTERACTIVE:
            return original(*args, **kwargs)
        numbers = pyplot.get_fignums()
        if numbers:
            os.makedirs(_state["folder"], exist_ok=True)
        for number in numbers:
            _state["count"] += 1
            path = os.path.join(_state["folder"], f"{_state['prefix']}-{_state['count']}.png")
            pyplot.figure(number).savefig(path)
            print(f"fastconv: no display; figure saved to {path}", file=sys.stderr)
        pyplot.close("all")

    show.saves_figures = True
    show.__wrapped__ = original
    pyplot.show = show
