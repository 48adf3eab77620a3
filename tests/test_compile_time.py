"""benchmarks/compile_time.py: Numba's compile events as a table of each function's own time."""
import time

import pytest
from numba import njit
from numba.core import event


@pytest.fixture(scope="module")
def compile_time(load_script):
    return load_script("benchmarks/compile_time.py")


def test_a_callee_compiled_inside_its_caller_leaves_the_callers_own_time(compile_time):
    def inner(x):
        return x * 2.0

    def outer(x):
        return compiled_inner(x) + 1.0

    compiled_inner = njit(inner)  # fresh dispatchers, no cache: both compile below
    compiled_outer = njit(outer)
    with event.install_recorder("numba:compile") as recording:
        origin = time.time()
        assert compiled_outer(1.5) == 4.0
    spans = {name.rsplit(".", 1)[-1]: span for name, *span in
             compile_time.compile_spans(recording.buffer, origin)}
    assert {"inner", "outer"} <= set(spans)
    inner_start, inner_own, inner_total = spans["inner"]
    outer_start, outer_own, outer_total = spans["outer"]
    assert inner_own == inner_total > 0  # it compiled nothing on its way
    assert 0 <= outer_start <= inner_start
    assert outer_own == pytest.approx(outer_total - inner_total, abs=1e-9)
    assert 0 < outer_own < outer_total


def test_the_table_sorts_by_own_time_and_keeps_the_top_rows(compile_time):
    spans = [("m.a", 0.1, 0.5, 2.0), ("m.b", 0.2, 1.5, 1.5), ("m.c", 1.9, 0.01, 0.01)]
    table = compile_time.report("deep", "float64", 3.0, spans, top=2)
    assert table.startswith("first DeepConvNet step (float64")
    assert "2.01 s compiling in this process (3 compiles)" in table
    rows = [line for line in table.splitlines() if line.startswith("| m.")]
    assert rows == ["| m.b | 0.20 s | 1.50 s | 1.50 s |", "| m.a | 0.10 s | 0.50 s | 2.00 s |"]


def test_a_cache_that_is_not_empty_is_refused(compile_time, tmp_path, capsys):
    (tmp_path / "leftover.nbi").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        compile_time.main(["--cache", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is not empty" in capsys.readouterr().err
