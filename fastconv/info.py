"""What a bug report needs: the versions, the BLAS, the threads, the mode and the folders.

``fastconv info`` prints :func:`collect`'s sections as text (``--json`` for a machine).
Every probe is guarded: a report is most needed where something is broken, so a probe that
fails shows its error in place of its value instead of stopping the report.
"""
import os
import platform
import sys

__all__ = ["collect", "format_text", "warnings_for"]

# variables that change what fastconv, Numba or the BLAS do; printed when set
ENVIRONMENT = ("FASTCONV_MODE", "FASTCONV_BACKEND", "FASTCONV_PARTS", "FASTCONV_CBLAS",
               "FASTCONV_DATA", "FASTCONV_BACKGROUND_COMPILE", "FASTCONV_DIRECT_CONV",
               "FASTCONV_WINOGRAD4",
               "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_CACHE_DIR",
               "NUMBA_DISABLE_JIT", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_INTERFACE_LAYER")

# the CPU features that decide which kernels LLVM and the BLAS can use
SIMD_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "neon", "asimd", "sve", "amx")


def _guarded(probe):
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 -- the report shows what failed, whatever it was
        return f"unavailable ({type(exc).__name__}: {exc})"


def _version(distribution):
    from importlib import metadata
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _versions():
    import fastconv
    versions = {"fastconv": fastconv.__version__,
                "Python": f"{platform.python_version()} ({platform.python_implementation()}, "
                          f"{sys.executable})"}
    for name in ("numpy", "numba", "llvmlite", "threadpoolctl", "matplotlib", "tqdm"):
        versions[name] = _guarded(lambda name=name: _version(name))
    versions["platform"] = platform.platform()
    return versions


def _blas():
    from threadpoolctl import threadpool_info
    from fastconv.kernels.jit import blas
    libraries = [{key: entry.get(key) for key in ("user_api", "internal_api", "version",
                                                   "architecture", "num_threads",
                                                   "threading_layer", "filepath")}
                 for entry in threadpool_info()]
    return {"fastconv bound": blas.BOUND or "nothing (convolutions multiply through NumPy)",
            "threadpoolctl": libraries}


def _threading_layer():
    import numba
    from numba.np.ufunc import parallel
    # The layer is chosen when Numba first starts its threads; start them so that the
    # report names the layer fastconv's kernels will use, not only the one requested.
    parallel._launch_threads()
    return numba.threading_layer()


def _numba():
    import numba
    import fastconv  # noqa: F401 -- importing fastconv selects the threading layer
    from fastconv.kernels.jit import gemm
    return {"threading layer": _guarded(_threading_layer),
            "threads": numba.get_num_threads(),
            "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS,
            "parts (FASTCONV_PARTS)": gemm.PARTS,
            "cache": _numba_cache_dir()}


def _numba_cache_dir():
    import numba
    import fastconv.kernels
    if numba.config.CACHE_DIR:
        return os.path.abspath(numba.config.CACHE_DIR)
    folder = os.path.dirname(os.path.abspath(fastconv.kernels.__file__))
    return os.path.join(folder, "jit", "__pycache__") + " (beside the kernels' source)"


def _fastconv():
    import fastconv
    from fastconv import mode
    return {"mode": fastconv.get_mode(),
            "default dtype": str(mode.default_dtype()),
            "backend": fastconv.get_backend()}


def _data_dirs():
    from fastconv.datasets import mnist
    found = {}
    for folder, origin in mnist._search_dirs("mnist", None):
        missing = mnist._missing_files(folder)
        state = ("all four files" if not missing
                 else "does not exist" if not folder.is_dir()
                 else f"{len(missing)} of 4 files missing")
        found[str(folder)] = f"{origin}: {state}"
    return found


def _cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("model name", "Model", "CPU part")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu():
    import llvmlite.binding as llvm
    features = llvm.get_host_cpu_features()
    simd = sorted(name for name, enabled in features.items()
                  if enabled and name.startswith(SIMD_PREFIXES))
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"model": _cpu_model(),
            "machine": platform.machine(),
            "LLVM target": llvm.get_host_cpu_name(),
            "count (os.cpu_count)": os.cpu_count(),
            "usable by this process": usable if usable is not None else "unknown",
            "SIMD": " ".join(simd) or "none reported"}


def collect():
    """The report as ``{section: {name: value}}``; plain data, ready for ``json.dumps``."""
    return {
        "versions": _guarded(_versions),
        "fastconv": _guarded(_fastconv),
        "BLAS": _guarded(_blas),
        "Numba": _guarded(_numba),
        "CPU": _guarded(_cpu),
        "MNIST search folders (first with all four files wins)": _guarded(_data_dirs),
        "environment": {name: os.environ[name] for name in ENVIRONMENT if name in os.environ},
        "warnings": warnings_for(os.environ),
    }


def warnings_for(environ):
    """Settings of ``environ`` that make timings unlike a user's machine."""
    found = []
    forced = [name for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if environ.get(name)]
    if forced:
        found.append(" and ".join(f"{name}={environ[name]}" for name in forced)
                     + (" force" if len(forced) > 1 else " forces")
                     + " OpenBLAS's kernel choice: the BLAS architecture above is that "
                       "choice, not the best one for this CPU. To benchmark as users run, unset "
                       "both for that command: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...")
    if environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        found.append("NUMBA_DISABLE_JIT is set: every kernel runs as slow Python")
    return found


def _lines(value, indent):
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            yield pad + "(none)"
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                yield f"{pad}{key}:"
                yield from _lines(item, indent + 2)
            else:
                yield f"{pad}{key}: {item}"
    elif isinstance(value, list):
        if not value:
            yield pad + "(none)"
        for item in value:
            if isinstance(item, dict):
                inner = list(_lines(item, indent + 2))
                yield pad + "- " + inner[0].lstrip() if inner else pad + "- (empty)"
                yield from inner[1:]
            else:
                yield f"{pad}- {item}"
    else:
        yield f"{pad}{value}"


def format_text(report):
    """The report as indented text, one section after another."""
    lines = []
    for section, value in report.items():
        if section == "warnings":
            lines += [f"WARNING: {text}" for text in value]
            continue
        lines.append(f"{section}:")
        lines += _lines(value, 2)
    return "\n".join(lines)
