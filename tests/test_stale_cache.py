"""Numba's cache is checked against a kernel's own file only; fastconv's guard recompiles
the kernels when any kernel source changed (kernels/jit/_stale_cache.py)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fastconv.kernels.jit import _stale_cache

INLINED = "from numba import njit\n\n@njit(inline='always')\ndef value():\n    return {}\n"
CALLER = textwrap.dedent("""\
    from numba import njit
    from inlined import value

    @njit(cache=True)
    def kernel():
        return value()
    """)


def _tree(tmp_path):
    jit = tmp_path / "kernels" / "jit"
    jit.mkdir(parents=True)
    (jit / "inlined.py").write_text(INLINED.format(1))
    (jit / "caller.py").write_text(CALLER)
    return jit


def _run(jit, guarded):
    guard = ("from fastconv.kernels.jit._stale_cache import invalidate_if_sources_changed\n"
             f"print(invalidate_if_sources_changed({str(jit)!r}))\n" if guarded else "")
    code = guard + f"import sys\nsys.path.insert(0, {str(jit)!r})\n" \
                   "from caller import kernel\nprint(kernel())\n"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(jit.parent.parent / "numba-cache"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_without_the_guard_numba_serves_the_old_inlined_code(tmp_path):
    jit = _tree(tmp_path)
    assert _run(jit, guarded=False) == ["1"]
    (jit / "inlined.py").write_text(INLINED.format(2))
    assert _run(jit, guarded=False) == ["1"]  # the hazard the guard exists for


def test_with_the_guard_a_changed_inlined_source_is_compiled_in(tmp_path):
    jit = _tree(tmp_path)
    assert _run(jit, guarded=True) == ["True", "1"]  # nothing recorded yet
    assert _run(jit, guarded=True) == ["False", "1"]  # unchanged: the cache serves
    (jit / "inlined.py").write_text(INLINED.format(2))
    assert _run(jit, guarded=True) == ["True", "2"]


def test_the_guard_looks_where_numba_caches_the_real_kernels():
    from fastconv.kernels.jit import pool
    folder = _stale_cache.numba_cache_folder(_stale_cache.kernel_sources()[-1])
    assert folder == Path(pool._pool_2x2._cache._cache_path)
    assert (folder / _stale_cache.RECORD_NAME).is_file()  # written at import


def test_a_folder_that_cannot_be_written_is_left_alone(tmp_path):
    jit = _tree(tmp_path)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    assert _stale_cache.invalidate_if_sources_changed(jit, blocker / "cache") is False
    assert blocker.read_text() == "a file where the cache folder would be"
