"""tools/example_times.py rewrites only the marked block, and says what it measured."""
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def times(load_script):
    return load_script("tools/example_times.py")


def test_rewrite_replaces_the_block_and_nothing_else(times, tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"before\n{times.START}\nold times\n{times.END}\nafter\n")
    rows = {"train_convnet.py": (0, 71.4, ["Training: 1 image in 1 s, 23,456 images/s"]),
            "train_deepnet.py": (1, 5.0, [])}
    # as measured where nothing forces OpenBLAS's kernel, whatever this process's environment
    measured = dict(times.measured_now(), forced_kernel="")
    times.rewrite(page, times.block(rows, ["--only", "train_convnet.py"], measured))
    text = page.read_text()
    assert text.startswith(f"before\n{times.START}\nMeasured ") and text.endswith(
        f"{times.END}\nafter\n")
    assert "old times" not in text
    command = "python tools/example_times.py --only train_convnet.py"
    words = " ".join(text.split())  # the block is wrapped
    assert f"`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE {command}`" in words
    assert "forced by" not in text
    assert "| `train_convnet.py` | ch07 SimpleConvNet, 20 epochs | 71 s | 23,456 images/s |" in text
    assert "failed (exit 1)" in text
    assert "load average" in text
    assert "parity mode" in text
    assert "fast mode" in times.block(rows, ["--fast"])
    forced = times.block(rows, ["--only", "train_convnet.py"],
                         dict(measured, forced_kernel="Haswell"))
    words = " ".join(forced.split())
    assert f"by `{command}`" in words and "forced by OPENBLAS_CORETYPE=Haswell" in words


def test_a_page_without_the_markers_is_refused(times, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("no block here\n")
    with pytest.raises(SystemExit):
        times.rewrite(page, "x")
    assert page.read_text() == "no block here\n"


@pytest.mark.parametrize("seconds, text", [(5.34, "5.3 s"), (71.4, "71 s"), (960, "16.0 min"),
                                           (7200, "2.0 h")])
def test_duration(times, seconds, text):
    assert times.duration(seconds) == text


def test_every_example_and_both_pages_are_covered(times):
    examples = {p.name for p in (ROOT / "examples").glob("*.py")
                if not p.name.startswith("_")}
    assert set(times.SCRIPTS) == examples
    for page in times.TARGETS:
        assert times.START in page.read_text() and times.END in page.read_text()


def test_load_rewrites_the_readme_with_its_rows_and_the_guide_with_all(times, tmp_path,
                                                                         monkeypatch):
    readme, guide = tmp_path / "README.md", tmp_path / "examples.md"
    for page in (readme, guide):
        page.write_text(f"{times.START}\nold\n{times.END}\n")
    monkeypatch.setattr(times, "README", readme)
    monkeypatch.setattr(times, "TARGETS", (readme, guide))
    saved = tmp_path / "times.json"
    saved.write_text(json.dumps({
        "rows": {"train_convnet.py": [0, 71.4, []], "overfit_dropout.py": [0, 12.0, []]},
        "extra": [], "measured": {"load": 0.5, "stamp": "2026-12-04 14:00 UTC",
                                  "machine": "the measuring machine"}}))
    assert times.main(["--load", str(saved)]) == 0
    short, full = readme.read_text(), guide.read_text()
    assert "train_convnet.py" in short and "overfit_dropout.py" not in short
    assert "docs/examples.md" in short
    assert "train_convnet.py" in full and "overfit_dropout.py" in full
    assert "2026-12-04 14:00 UTC" in short and "load average 0.5" in full
    assert "the measuring machine" in " ".join(full.split())


@pytest.mark.parametrize("forced, shown, hidden", [
    ("", ["`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/example_times.py`",
          "BLAS kernel SkylakeX"], ["forced"]),
    ("Haswell", ["forced by OPENBLAS_CORETYPE=Haswell", "`python tools/example_times.py`"],
     ["env -u"]),
])
def test_the_block_says_which_blas_kernel_ran_and_whether_it_was_forced(times, forced, shown,
                                                                          hidden):
    measured = {"stamp": "2026-12-06 03:30 UTC", "load": 0.4, "machine": "x86_64, 2 CPUs",
                "blas": "SkylakeX", "forced_kernel": forced}
    text = " ".join(times.block({"train_convnet.py": (0, 71.4, [])}, [], measured).split())
    for part in shown:
        assert part in text
    for part in hidden:
        assert part not in text


def test_measured_now_records_the_forcing_variable(times, monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert times.measured_now()["forced_kernel"] == "Haswell"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert times.measured_now()["forced_kernel"] == ""


def test_the_machine_is_named_as_compare_names_it(times, load_script):
    """By its CPU's model, family and vector unit: the examples train about twice as fast on
    a Zen 5 as on a Zen 4, and "AMD EPYC" alone names both."""
    import platform
    compare = load_script("benchmarks/compare.py")
    assert times.measured_now()["machine"] == (f"{compare.machine_name()}, {os.cpu_count()} "
                                               f"CPUs ({platform.system()})")
