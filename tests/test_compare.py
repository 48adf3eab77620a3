"""benchmarks/compare.py's table: medians over rounds, per-round ratios, targets."""
import pytest


@pytest.fixture(scope="module")
def compare(load_script):
    return load_script("benchmarks/compare.py")


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
    assert simple["met"] is False  # the target is 0.25x PyTorch
    deep = rows[compare.WORKLOADS["deep_step"][0]]
    assert deep["ratio"] == pytest.approx(0.065 / 0.07)
    assert deep["met"] is False  # the target is 0.6x PyTorch
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


# --- FLOPs, hardware limit, parity-mode rows, BLAS warning, --readme -----------------------

def test_flops_count_two_per_multiply_add_and_skip_the_first_input_gradient(compare):
    # SimpleConvNet per image: conv 30 filters x 24x24 outputs x 25 taps, affine 4320x100,
    # affine 100x10
    conv, affine1, affine2 = 30 * 24 * 24 * 25, 4320 * 100, 100 * 10
    forward = conv + affine1 + affine2
    assert compare.workload_flops("inference") == 2 * forward * compare.N_INFER
    assert compare.workload_flops("simple_step") == 2 * (3 * forward - conv) * compare.BATCH
    assert compare.workload_flops("simple_step64") == compare.workload_flops("simple_step")
    # DeepConvNet: the fourth convolution pads by 2, so its 14x14 input gives 16x16
    deep_conv4 = 32 * 16 * 16 * 32 * 9
    assert compare.layer_macs(compare.ARCHITECTURES["DeepConvNet"][3]) == deep_conv4


@pytest.mark.parametrize("network", ["SimpleConvNet", "DeepConvNet", "TwoLayerNet"])
def test_architectures_match_the_networks(compare, network):
    """The hand-written layer list is what the network's layers see, run on one image."""
    import numpy as np
    from fastconv import nets
    np.random.seed(0)
    net = (nets.TwoLayerNet(784, 50, 10, dtype=np.float64) if network == "TwoLayerNet"
           else getattr(nets, network)(dtype=np.float64))
    layers = getattr(net, "layers", None)
    layers = list(layers.values()) if hasattr(layers, "values") else layers
    if network == "TwoLayerNet":
        x = np.zeros((1, 784))
        seen = [("affine",) + net.params[w].shape for w in ("W1", "W2")]
    else:
        x, seen = np.zeros((1, 1, 28, 28)), []
        for layer in layers:
            name = type(layer).__name__
            if name == "Convolution":
                filters, channels, size, _ = layer.W.shape
                pooled = False
                seen.append(["conv", channels, x.shape[2], x.shape[3], filters, size,
                             layer.pad, layer.stride, pooled])
            elif name == "Affine":
                seen.append(("affine",) + layer.W.shape)
            elif name == "Pooling":
                seen[-1][-1] = True
            x = layer.forward(x, train_flg=False) if name == "Dropout" else layer.forward(x)
    assert [tuple(s) for s in seen] == compare.ARCHITECTURES[network]


def test_rows_give_the_hardware_limit_and_the_parity_speedup(compare):
    times = {("simple_step", "torch"): [0.020, 0.020], ("simple_step", "fastconv"): [0.004, 0.006],
             ("simple_step64", "book"): [0.100, 0.120], ("simple_step64", "fastconv"):
             [0.008, 0.015], ("first_step", "book"): [0.1, 0.1],
             ("first_step", "fastconv"): [0.3, 0.3]}
    results = fake_results(times)
    results["gemm_peak", "numpy"] = [{"rates": {"float32": 100e9, "float64": 40e9}},
                                     {"rates": {"float32": 200e9, "float64": 50e9}}]
    rows = {row["label"]: row for row in compare.build_rows(results)}
    simple = rows[compare.WORKLOADS["simple_step"][0]]
    flops = compare.workload_flops("simple_step")
    assert simple["limit"] == pytest.approx(flops / 200e9)  # the best round is the peak
    assert simple["of_limit"] == pytest.approx(0.005 / (flops / 200e9))
    assert simple["limit_met"] is (simple["of_limit"] <= 2.5)
    assert simple["ratio"] == pytest.approx(0.25) and simple["met"] is True
    parity = rows[compare.WORKLOADS["simple_step64"][0]]
    assert parity["limit"] == pytest.approx(flops / 50e9)  # dgemm's peak for float64
    assert parity["limit_met"] is None  # the 2.5x target is fast mode's
    # per-round book/fastconv 12.5 and 8: the median 10.25 meets "at least 10x"
    assert parity["book_speedup"] == pytest.approx(10.25) and parity["met"] is True
    assert parity["ratio"] is None  # no PyTorch in parity mode
    first = rows[compare.WORKLOADS["first_step"][0]]
    assert first["book_speedup"] is None and first.get("limit") is None  # no FLOPs to judge
    table = compare.markdown(list(rows.values()), ["header"])
    line = next(l for l in table.splitlines() if l.startswith(f"| {parity['label']} |"))
    assert "10.2×" in line and "≥ 10× faster than the book" in line


def test_forced_kernel_warning_only_when_coretype_is_set(compare):
    assert compare.forced_kernel_warning({}) is None
    text = compare.forced_kernel_warning({"OPENBLAS_CORETYPE": "Haswell",
                                          "OPENBLAS_L2_SIZE": "512"})
    assert "Haswell" in text and "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE" in text


def test_gemm_peak_worker_reports_rates_and_the_blas(compare):
    """The peak measurement in its own process (quick: a 128² product)."""
    result = compare.run_worker({"framework": "numpy", "workload": "gemm_peak", "threads": 1,
                                 "repeats": (128, 2)}, compare.thread_env(1))
    assert set(result["rates"]) == {"float32", "float64"}
    assert all(rate > 1e6 for rate in result["rates"].values())
    assert result["blas"] and {"internal_api", "architecture", "version"} <= set(
        result["blas"][0])


README_TEXT = ("# title\n\nintro\n\n<!-- compare:begin -->\nold table\n<!-- compare:end -->\n\n"
               "after\n")


def test_readme_block_is_replaced_between_the_markers(compare, tmp_path):
    times = {("deep_step", "torch"): [0.07], ("deep_step", "fastconv"): [0.03]}
    rows = compare.build_rows(fake_results(times))
    block = compare.short_markdown(rows, ["run header"])
    readme = tmp_path / "README.md"
    readme.write_text(README_TEXT, encoding="utf-8")
    compare.rewrite_readme(str(readme), block)
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text
    assert text.startswith("# title\n\nintro\n\n<!-- compare:begin -->\nrun header\n")
    assert text.endswith("|\n<!-- compare:end -->\n\nafter\n")
    deep = next(l for l in text.splitlines() if l.startswith("| DeepConvNet training step ("))
    assert "0.43× the time" in deep and "target" not in text
    assert "peak RSS" not in text  # the short table leaves memory out
    assert "first" not in text.lower()  # and the start-up rows
    compare.rewrite_readme(str(readme), block)  # idempotent: a second run replaces its own block
    assert readme.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("text", ["no markers\n", "<!-- compare:end -->\n<!-- compare:begin -->\n",
                                  README_TEXT + "<!-- compare:begin -->\n"])
def test_readme_without_one_marker_pair_is_refused_untouched(compare, tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="compare:begin"):
        compare.rewrite_readme(str(readme), "table\n")
    assert readme.read_text(encoding="utf-8") == text


def test_readme_option_is_checked_before_measuring(compare, tmp_path, capsys, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n", encoding="utf-8")

    def measured(*args, **kwargs):
        raise AssertionError("measured before checking --readme")
    monkeypatch.setattr(compare, "run_all", measured)
    with pytest.raises(SystemExit):
        compare.main(["--readme", str(readme), "--no-torch", "--rounds", "1", "--quick",
                      "--out", str(tmp_path)])
    assert "compare:begin" in capsys.readouterr().err
    assert not (tmp_path / "compare.md").exists()


def test_readme_block_says_when_and_how_and_shows_the_chart(compare):
    import datetime
    import types
    rows = compare.build_rows(fake_results({("deep_step", "torch"): [0.07],
                                            ("deep_step", "fastconv"): [0.03]}))
    args = types.SimpleNamespace(threads=2, load_at_start=0.25)
    header = compare.short_header(args, ["--rounds", "3", "--readme", "README.md"],
                                  datetime.datetime(2026, 12, 4, 14, 0))
    block = compare.short_markdown(rows, header, "docs/compare.png")
    flat = " ".join(block.split())
    assert flat.startswith("Measured 2026-12-04 by `")
    assert "python benchmarks/compare.py --rounds 3 --readme README.md`" in flat
    assert "2 threads" in flat and "load average 0.2" in flat
    assert max(len(line) for line in block.splitlines()[:3]) <= 92
    assert block.rstrip().endswith("(docs/compare.png)")


def _full_results(compare):
    """Every workload measured by every framework, as a real run fills the chart."""
    times = {(w, f): [0.001 * (i + 1), 0.0012 * (i + 1)]
             for i, w in enumerate(compare.WORKLOADS) for f in compare.FRAMEWORKS}
    for f in compare.FRAMEWORKS:
        times["simple_step@1", f], times["simple_step@2", f] = [0.02, 0.02], [0.012, 0.011]
    results = fake_results(times)
    for f, speedup in zip(compare.FRAMEWORKS, (1.05, 1.59, 1.75)):
        results["paired_scaling", f] = [{"speedup": speedup, "seconds": 0.01,
                                         "maxrss_mb": 100.0, "versions": {}}] * 2
    return results


def test_chart_labels_do_not_overlap_and_the_target_line_is_named(compare):
    pytest.importorskip("matplotlib")
    fig = compare.figure(compare.build_rows(_full_results(compare)), "title")
    fig.canvas.draw()  # the constrained layout places the axes when the figure is drawn
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [label.get_window_extent(renderer) for label in ax.get_xticklabels()
                 if label.get_text()]
        assert len(boxes) >= 2
        for left, right in zip(boxes, boxes[1:]):
            assert left.x1 < right.x0, (ax.get_ylabel(), left, right)
    texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert any(f"{compare.SCALING_TARGET:g}×" in t and "target" in t for t in texts), texts
    assert len(texts) == len(set(texts)) == len(compare.FRAMEWORKS) + 1, texts
    import matplotlib.pyplot as plt
    plt.close(fig)
