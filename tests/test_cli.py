"""The ``fastconv`` command: ``info`` reports the real environment, ``run`` and ``bench`` delegate.

``info`` runs in a subprocess with the settings under test in its environment, since most of
what it reports (the mode, the threads, the parts) is fixed when fastconv is imported.
"""
import json
import os
import subprocess
import sys
from importlib import metadata

import numba
import numpy as np
import pytest

from fastconv import cli, info

TIMEOUT = 120  # seconds; info takes a few, so only a hang reaches it


def run_cli(args, env_changes, cwd=None):
    env = {key: value for key, value in os.environ.items()
           if key not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "FASTCONV_MODE",
                          "FASTCONV_BACKEND", "FASTCONV_PARTS")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-m", "fastconv.cli", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, env=env, cwd=cwd)


def test_info_json_reports_the_settings_in_force(tmp_path):
    result = run_cli(["info", "--json"], {"FASTCONV_MODE": "fast", "FASTCONV_BACKEND": "numpy",
                                          "FASTCONV_PARTS": "3", "NUMBA_NUM_THREADS": "1",
                                          "FASTCONV_DATA": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["versions"]["numpy"] == np.__version__
    assert report["versions"]["numba"] == numba.__version__
    assert report["versions"]["llvmlite"] == metadata.version("llvmlite")
    assert report["versions"]["threadpoolctl"] == metadata.version("threadpoolctl")
    assert report["fastconv"] == {"mode": "fast", "default dtype": "float32", "backend": "numpy"}
    assert report["Numba"]["threads"] == 1
    assert report["Numba"]["parts (FASTCONV_PARTS)"] == 3
    assert report["Numba"]["threading layer"] in ("workqueue", "omp", "tbb")
    from fastconv.kernels.jit import blas
    assert report["BLAS"]["fastconv bound"] == (blas.BOUND or
                                                "nothing (convolutions multiply through NumPy)")
    assert all("architecture" in library for library in report["BLAS"]["threadpoolctl"])
    assert report["CPU"]["count (os.cpu_count)"] == os.cpu_count()
    assert str(tmp_path / "mnist") in report["MNIST search folders (first with all four "
                                             "files wins)"]
    assert report["environment"]["FASTCONV_PARTS"] == "3"
    assert report["warnings"] == []


def test_info_text_has_every_section_and_warns_when_openblas_is_forced():
    result = run_cli(["info"], {"OPENBLAS_CORETYPE": "Haswell"})
    assert result.returncode == 0, result.stderr
    for needle in ("fastconv: 0.1", "numpy:", "numba:", "llvmlite:", "threadpoolctl:",
                   "fastconv bound:", "architecture:", "threading layer:", "threads:",
                   "parts (FASTCONV_PARTS):", "mode: parity", "backend: numba", "cache:",
                   "MNIST search folders", "SIMD:"):
        assert needle in result.stdout, f"{needle!r} missing from:\n{result.stdout}"
    assert "WARNING: OPENBLAS_CORETYPE=Haswell forces" in result.stdout


def test_warnings_name_each_forced_variable():
    assert info.warnings_for({}) == []
    both = info.warnings_for({"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"})
    assert len(both) == 1 and "OPENBLAS_L2_SIZE=512" in both[0] and "env -u" in both[0]


def test_format_text_lists_nested_values():
    text = info.format_text({"BLAS": {"libraries": [{"internal_api": "openblas",
                                                     "architecture": "Zen"}]},
                             "warnings": ["careful"]})
    assert text.splitlines() == ["BLAS:", "  libraries:", "    - internal_api: openblas",
                                 "      architecture: Zen", "WARNING: careful"]


def test_run_hands_options_script_and_arguments_to_the_runner(tmp_path):
    script = tmp_path / "show.py"
    script.write_text("import sys\nimport fastconv\n"
                      "print('mode', fastconv.get_mode(), 'argv', sys.argv[1:])\n"
                      "sys.exit(3)\n")
    result = run_cli(["run", "--fast", str(script), "--epochs", "2"], {}, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "mode fast argv ['--epochs', '2']" in result.stdout


def test_bench_passes_its_arguments_to_fastconv_bench(monkeypatch, capsys):
    import fastconv.bench
    seen = []
    monkeypatch.setattr(fastconv.bench, "main", lambda argv, prog: seen.append((argv, prog)))
    monkeypatch.setattr(info, "collect", lambda: {
        "BLAS": {"threadpoolctl": [{"internal_api": "openblas", "version": "0.3",
                                    "architecture": "Haswell", "num_threads": 2}]},
        "warnings": ["forced"]})
    assert cli.main(["bench", "--nets", "--dtype", "float32"]) == 0
    assert seen == [(["--nets", "--dtype", "float32"], "fastconv bench")]
    out = capsys.readouterr().out
    assert "kernel Haswell" in out and "WARNING: forced" in out


@pytest.mark.parametrize("argv, code", [([], 2), (["--help"], 0), (["train"], 2)])
def test_usage(argv, code, capsys):
    assert cli.main(argv) == code
    captured = capsys.readouterr()
    assert "fastconv info" in captured.out + captured.err


def test_run_without_a_script_names_only_the_script_as_missing(capsys):
    from fastconv.zerochange import runner
    assert runner.main([]) == 2
    assert capsys.readouterr().err.rstrip().endswith(
        "error: the following arguments are required: SCRIPT")


def test_console_script_is_declared():
    scripts = metadata.entry_points(group="console_scripts")
    assert any(e.name == "fastconv" and e.value == "fastconv.cli:main" for e in scripts), \
        "reinstall (pip install -e .) so that the fastconv command exists"


def test_info_lists_every_fastconv_variable_that_the_code_reads():
    # the two that python -m fastconv sets for its child processes are not a user's switches
    import pathlib
    import re
    from fastconv.info import ENVIRONMENT
    root = pathlib.Path(__file__).resolve().parents[1]
    read = set()
    for folder in ("fastconv", "kernels"):
        for path in (root / folder).rglob("*.py"):
            read.update(re.findall(r"\bFASTCONV_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    assert read - {"FASTCONV_ZERO_CHANGE", "FASTCONV_PLOTS"} <= set(ENVIRONMENT)
