"""Judge what headless Chromium saw of the asv dashboard (called by .ci/asv_browser_check.sh).

``python .ci/asv_browser_verdict.py DIR`` reads DIR/front.html and DIR/graph.html (Chromium's
``--dump-dom`` of the front page and of one graph page) and DIR/graph.png (its screenshot),
and exits non-zero, saying why, when:

- either page is asv's error page ("Can not determine continental origin of swallow": an
  external script failed to load) or an empty document;
- the front page's benchmark grid lists no benchmark;
- the graph page has no flot canvas with tick labels, or the screenshot's plot area holds
  no pixels in the colours flot draws its series in (the drawn line and points).
"""
import re
import sys

ERROR_MARKERS = ("continental origin of swallow", "external (JavaScript) dependencies",
                 "external dependencies failed to load")


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def page_problems(name, dom):
    if len(dom) < 500:
        return [f"{name}: Chromium returned an almost empty document ({len(dom)} characters)"]
    return [f"{name}: shows asv's error page ({marker!r})"
            for marker in ERROR_MARKERS if marker in dom]


def front_problems(dom):
    # the grid is a set of boxes, one per benchmark, each linking to its graph page
    boxes = re.findall(r'class="[^"]*benchmark-container[^"]*"', dom)
    if not boxes:
        return ["front page: the benchmark grid is empty (no benchmark-container element)"]
    return []


def graph_problems(dom):
    problems = []
    if 'class="flot-base"' not in dom:
        problems.append("graph page: no flot canvas (class flot-base): the plot was not drawn")
    if "flot-tick-label" not in dom:
        problems.append("graph page: the plot has no axis tick labels")
    return problems


def coloured_pixels(png_path):
    """Pixels that are neither grey nor white: flot's series colours, asv's links, buttons."""
    import matplotlib.image
    img = matplotlib.image.imread(png_path)[..., :3]
    if img.dtype.kind != "f":  # matplotlib reads PNG as floats in [0, 1]; be safe anyway
        img = img / 255.0
    spread = img.max(axis=-1) - img.min(axis=-1)
    return int((spread > 0.25).sum())


def screenshot_problems(png_path, baseline):
    """The graph screenshot must hold clearly more colour than the front page's (links and
    the navigation bar only): the plotted series."""
    drawn = coloured_pixels(png_path)
    if drawn < baseline + 200:
        return [f"graph page: the screenshot has {drawn} coloured pixels against "
                f"{baseline} on the front page: no series was drawn"]
    return []


def main(folder):
    front, graph = read(f"{folder}/front.html"), read(f"{folder}/graph.html")
    problems = page_problems("front page", front) + page_problems("graph page", graph)
    if not problems:
        problems += front_problems(front) + graph_problems(graph)
        problems += screenshot_problems(f"{folder}/graph.png",
                                        coloured_pixels(f"{folder}/front.png"))
    for problem in problems:
        print("asv browser check FAILED:", problem)
    if not problems:
        print("asv browser check: front page and graph page rendered offline, plot drawn")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
