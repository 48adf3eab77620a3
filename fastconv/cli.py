"""The ``fastconv`` command: ``run`` a book script unchanged, ``info`` for a bug report, ``bench``.

    fastconv run [--fast] [--report] [--plots DIR] [--checkpoint DIR] SCRIPT [ARGS...]
                                                         same as: python -m fastconv ...
    fastconv info [--json]                               versions, BLAS, threads, mode, folders
    fastconv bench [--nets] [...]                        kernels and networks against NumPy
    fastconv --version

``bench`` runs :mod:`fastconv.bench` (installed with the package). The comparison with
PyTorch, ``benchmarks/compare.py``, needs the repository and is not run from here.
"""
import argparse
import json
import sys

__all__ = ["main"]

COMMANDS = ("run", "info", "bench")


def _run(argv):
    # imported only here: the runner installs import hooks that the other commands never need
    from fastconv import zerochange
    return zerochange.main(argv)


def _info(argv):
    parser = argparse.ArgumentParser(prog="fastconv info",
                                     description="Print what a bug report needs.")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    options = parser.parse_args(argv)
    from fastconv import info
    report = info.collect()
    if options.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(info.format_text(report))
    return 0


def _bench(argv):
    from fastconv import bench, info
    # a timing means little without the BLAS kernel it ran on and the settings that forced it
    report = info.collect()
    for library in report["BLAS"].get("threadpoolctl", []) if isinstance(
            report["BLAS"], dict) else []:
        print(f"BLAS: {library['internal_api']} {library['version']}, "
              f"kernel {library['architecture']}, {library['num_threads']} threads")
    for text in report["warnings"]:
        print(f"WARNING: {text}")
    bench.main(argv, prog="fastconv bench")
    print("(The comparison with PyTorch is benchmarks/compare.py in the repository; "
          "see docs/benchmarking.md.)")
    return 0


def _usage():
    return __doc__.split("\n\n")[1]


def main(argv=None):
    """Entry point of the ``fastconv`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage:\n" + _usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        import fastconv
        print(f"fastconv {fastconv.__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"fastconv: unknown command {command!r}; choose one of {', '.join(COMMANDS)}\n"
              "usage:\n" + _usage(), file=sys.stderr)
        return 2
    # run's options and the script's own arguments go to the runner untouched
    handler = {"run": _run, "info": _info, "bench": _bench}[command]
    try:
        return handler(rest)
    except SystemExit as exc:  # argparse's --help and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2


if __name__ == "__main__":
    sys.exit(main())
