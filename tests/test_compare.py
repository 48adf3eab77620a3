"""benchmarks/compare.py's table: medians over rounds, per-round ratios, targets."""
import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def compare():
    path = os.path.join(HERE, os.pardir, "benchmarks", "compare.py")
    spec = importlib.util.spec_from_file_location("compare_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_results(times):
    """{(workload, framework): [result per round]} from {(workload, framework): [seconds]}."""
    return {key: [{"seconds": s, "maxrss_mb": 100.0 + i, "versions": {}}
                  for i, s in enumerate(seconds)] for key, seconds in times.items()}


def test_rows_take_medians_over_rounds_and_ratios_per_round(compare):
    times = {
        ("simple_step", "torch"): [0.020, 0.030, 0.025],
        ("simple_step", "fastconv"): [0.008, 0.009, 0.020],  # a noisy third round
        ("simple_step", "book"): [0.1, 0.1, 0.1],
        ("deep_step", "torch"): [0.07, 0.07, 0.07],
        ("deep_step", "fastconv"): [0.08, 0.06, 0.065],
        ("simple_step@1", "fastconv"): [0.016, 0.018, 0.030],
        ("simple_step@2", "fastconv"): [0.008, 0.009, 0.020],
    }
    paired = {("paired_scaling", "fastconv"): [1.8, 1.6, 1.75],
              ("paired_scaling", "torch"): [1.5, 1.4, 1.6]}
    results = fake_results(times)
    for key, speedups in paired.items():
        results[key] = [{"speedup": x, "seconds": 0.01, "maxrss_mb": 100.0, "versions": {}}
                        for x in speedups]
    rows = {row["label"]: row for row in compare.build_rows(results)}
    simple = rows[compare.WORKLOADS["simple_step"][0]]
    assert simple["values"]["fastconv"] == pytest.approx(0.009)
    assert simple["values"]["torch"] == pytest.approx(0.025)
    # per-round ratios 0.4, 0.3, 0.8: the median is 0.4, not 0.009 / 0.025
    assert simple["ratio"] == pytest.approx(0.4)
    assert simple["ratio_range"] == pytest.approx((0.3, 0.8))
    assert simple["met"] is True
    deep = rows[compare.WORKLOADS["deep_step"][0]]
    assert deep["ratio"] == pytest.approx(0.065 / 0.07)
    assert deep["met"] is True
    separate = rows["SimpleConvNet step, 2 threads vs 1 thread speed-up, separate processes"]
    assert separate["values"]["fastconv"] == pytest.approx(2.0)  # per round 2.0, 2.0, 1.5
    assert separate["met"] is None  # shown, but the target is judged on the paired row
    scaling = rows["SimpleConvNet step, 2 threads vs 1 thread speed-up, paired in one process"]
    assert scaling["values"]["fastconv"] == pytest.approx(1.75)
    assert scaling["values"]["torch"] == pytest.approx(1.5)
    assert scaling["met"] is True
    rss = rows["peak RSS, SimpleConvNet training steps"]
    assert rss["values"]["fastconv"] == pytest.approx(101.0)
    two_layer = rows[compare.WORKLOADS["two_layer_step"][0]]
    assert two_layer["ratio"] is None and two_layer["met"] is None  # never measured


def test_a_missed_target_is_marked_in_the_markdown(compare):
    times = {("deep_step", "torch"): [0.07, 0.07], ("deep_step", "fastconv"): [0.08, 0.075]}
    rows = compare.build_rows(fake_results(times))
    deep = next(r for r in rows if r["label"] == compare.WORKLOADS["deep_step"][0])
    assert deep["met"] is False
    table = compare.markdown(rows, ["header"])
    line = next(l for l in table.splitlines() if l.startswith(f"| {deep['label']} |"))
    assert "1.11" in line and "1.07–1.14" in line and "**no**" in line


def test_paired_speedup_alternates_thread_counts_and_takes_pair_ratios(compare, monkeypatch):
    """A fake step whose time depends on the thread count set last, with the 'host' slowing
    down by 3x half-way: the paired ratio stays 2 although the medians of the two counts'
    times drift."""
    state = {"threads": None, "calls": 0, "order": []}

    def set_threads(n):
        state["threads"] = n
        state["order"].append(n)

    clock = {"now": 0.0}

    def step():
        state["calls"] += 1
        slow = 3.0 if state["calls"] > 20 else 1.0
        clock["now"] += slow * (0.010 if state["threads"] == 1 else 0.005)

    monkeypatch.setattr(compare.time, "perf_counter", lambda: clock["now"])
    result = compare._paired_speedup(step, set_threads, 2, warmup=1, number=8)
    assert result["speedup"] == pytest.approx(2.0)
    # warm-up at 1 then 2, then pairs in alternating order: (1, 2), (2, 1), ...
    assert state["order"][:6] == [1, 2, 1, 2, 2, 1]
    assert state["calls"] == 2 + 8 * 4  # every timed step follows an untimed one
