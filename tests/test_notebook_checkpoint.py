"""``%fastconv --checkpoint DIR`` after ``%load_ext fastconv``: a notebook whose kernel dies
mid-training is run again from the top (Restart & Run All) and ends with the bits of a run
never stopped; and the magic's other options. Each notebook runs its cells in an IPython
shell in a child process, as a kernel would, so that this process's modules stay as they
are."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from test_resume_script import LOCK_PROBE, SCRIPT, _loaded

pytest.importorskip("IPython")

# runs the cells given as a JSON list in argv[1] one after another, as Run All does: stops
# at the first that fails, with that cell's error name on stderr
KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
for cell in json.loads(sys.argv[1]):
    result = shell.run_cell(cell)
    if not result.success:
        error = result.error_in_exec or result.error_before_exec
        print("CELL FAILED", type(error).__name__, error, file=sys.stderr)
        sys.exit(1)
"""


def _command(cells):
    return [sys.executable, "-c", KERNEL, json.dumps(cells)]


def _run(cells, cwd, expect_success=True):
    done = subprocess.run(_command(cells), cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    assert (done.returncode == 0) == expect_success, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _training_cells(folder, out):
    # the script's body as a notebook's cell, its output file given in place of argv[1]
    body = textwrap.dedent(SCRIPT).replace("sys.argv[1]", repr(str(out)))
    return ["%load_ext fastconv", f"%fastconv --checkpoint {folder}", body]


def test_a_notebook_killed_mid_training_and_run_all_again_ends_as_a_run_never_stopped(
        tmp_path):
    _run(_training_cells(tmp_path / "whole", tmp_path / "whole.npz"), tmp_path)
    expected = _loaded(tmp_path / "whole.npz")

    folder = tmp_path / "killed"
    folder.mkdir()
    # the first run's start state, as a run killed and run again would have kept
    (folder / "random-state.json").write_bytes(
        (tmp_path / "whole" / "random-state.json").read_bytes())
    cells = _training_cells(folder, tmp_path / "killed.npz")
    proc = subprocess.Popen(_command(cells), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:  # the kernel dies while the second Trainer trains
        deadline = time.monotonic() + 120
        while (not (folder / "trainer-2.ckpt").exists() and proc.poll() is None
               and time.monotonic() < deadline):
            time.sleep(0.005)
        time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (tmp_path / "killed.npz").exists() and (folder / "trainer-2.ckpt").exists()

    first = (folder / "trainer-1.ckpt").stat()
    _run(cells, tmp_path)  # Restart & Run All
    # the finished first Trainer was loaded, not trained again
    assert (folder / "trainer-1.ckpt").stat().st_mtime_ns == first.st_mtime_ns
    got = _loaded(tmp_path / "killed.npz")
    assert got.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


PROBE = """
import numpy as np
from fastconv import get_mode, trainer
print("MODE", get_mode(), "FOLDER", trainer.run_checkpoint_folder(), "DRAW", np.random.rand())
"""


def test_the_magic_sets_the_mode_and_a_line_it_cannot_read_changes_nothing(tmp_path):
    bad_lines = ["--fast --parity", "--bogus", "--checkpoint", "--checkpoint 'unclosed",
                 "--checkpoint a --no-checkpoint"]
    cells = ["%load_ext fastconv", "%fastconv --fast", PROBE]
    for line in bad_lines:
        done = _run(cells + [f"%fastconv {line}"], tmp_path, expect_success=False)
        assert "CELL FAILED UsageError" in done.stderr, line
        assert "usage: %fastconv" in done.stderr, line
    # each failing line, then the probe: nothing moved
    for line in bad_lines:
        cells += [f"try:\n    get_ipython().run_line_magic('fastconv', {line!r})\n"
                  f"except Exception as e:\n    print('REFUSED', type(e).__name__)", PROBE]
    out = _run(cells, tmp_path).stdout
    assert out.count("REFUSED UsageError") == len(bad_lines)
    probes = [line for line in out.splitlines() if line.startswith("MODE")]
    assert len(probes) == len(bad_lines) + 1
    assert len({line.rsplit("DRAW", 1)[0] for line in probes}) == 1
    assert probes[0].startswith("MODE fast FOLDER None")
    assert not os.listdir(tmp_path)  # no folder made for a refused --checkpoint

    out = _run(["%load_ext fastconv", "%fastconv --fast", "%fastconv --parity", "%fastconv",
                PROBE], tmp_path).stdout
    assert "fastconv: parity mode; no --checkpoint folder" in out
    assert "MODE parity FOLDER None" in out


def test_a_start_state_fastconv_did_not_write_is_refused_without_drawing(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "random-state.json").write_text('{"format": "fastconv-random-state"}')
    cells = ["%load_ext fastconv", "import numpy as np\nnp.random.seed(5)",
             f"try:\n    %fastconv --checkpoint {folder}\nexcept Exception as e:\n"
             f"    print('REFUSED', type(e).__name__, e)", PROBE]
    out = _run(cells, tmp_path).stdout
    assert "REFUSED UsageError --checkpoint: " in out and "not a start state written by" in out
    np.random.seed(5)
    assert f"FOLDER None DRAW {np.random.rand()}" in out


def test_checkpoints_stop_with_no_checkpoint_and_with_unload_ext(tmp_path):
    for stop in ("%fastconv --no-checkpoint", "%unload_ext fastconv"):
        out = _run(["%load_ext fastconv", f"%fastconv --checkpoint {tmp_path / 'run'}", stop,
                    PROBE], tmp_path).stdout
        assert "Trainers made from now on save to" in out
        assert "FOLDER None" in out, stop
        if "--no-checkpoint" in stop:
            assert "fastconv: Trainers made from now on save no checkpoint" in out


FOLDERS_PROBE = """
import subprocess, sys
for folder in ({a!r}, {b!r}):
    other = subprocess.run([sys.executable, "-c", {probe!r}, folder + "/.lock"],
                           capture_output=True, text=True)
    print("FREE" if other.returncode == 0 else
          "HELD" if "LockedError" in other.stderr else "ABSENT", folder)
"""


def test_the_same_folder_again_keeps_its_lock_and_another_frees_it(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    probe = FOLDERS_PROBE.format(a=a, b=b, probe=LOCK_PROBE)
    alias = str(tmp_path / "link-to-a")
    out = _run(["%load_ext fastconv", f"%fastconv --checkpoint {a}",
                f"%fastconv --checkpoint {a}",  # a cell of Run All, run again
                f"import os; os.symlink({a!r}, {alias!r})",
                f"%fastconv --checkpoint {alias}", probe,  # the same folder by another name
                f"%fastconv --checkpoint {b}", probe, "%fastconv --no-checkpoint", probe],
               tmp_path).stdout
    assert "in use" not in out
    states = [line for line in out.splitlines() if line.startswith(("FREE", "HELD", "ABSENT"))]
    assert states == [f"HELD {a}", f"ABSENT {b}", f"FREE {a}", f"HELD {b}", f"FREE {a}",
                      f"FREE {b}"], out
