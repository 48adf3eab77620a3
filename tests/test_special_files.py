"""Every reader of a file a user names refuses a FIFO, a device and a folder at once, by what
it is: a FIFO would block its open for ever, and /dev/zero has no end and a size of 0 that
passes every size check (a checkpoint reader read it until memory ran out). The readers run
in a child process, so that a hang fails this test at its timeout instead of stopping the
suite, and under a memory limit."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")

READERS = """
import os, sys
import numpy as np
from fastconv import checkpoint
from fastconv.datasets.idx import read_idx
from fastconv.datasets.mnist import read_book_pickle
from fastconv.nets import TwoLayerNet
from fastconv.nets.params_io import read_params
from fastconv.sweep.results import read_results
from fastconv.trainer import Trainer
from fastconv.zerochange.resume import read_start_state

def trained(path):
    x, t = np.random.rand(10, 4), np.random.randint(0, 2, 10)
    Trainer(TwoLayerNet(4, 3, 2), x, t, x, t, epochs=1, mini_batch_size=5, verbose=False,
            checkpoint=path).train()

readers = {"Trainer checkpoint": trained, "checkpoint.read_header": checkpoint.read_header,
           "read_start_state": read_start_state, "read_params": read_params,
           "read_idx": read_idx, "read_book_pickle": read_book_pickle,
           "read_results": read_results}
for special in sys.argv[1:]:
    for name, reader in readers.items():
        try:
            reader(special)
            outcome = "READ"
        except Exception as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        print(f"{os.path.basename(special)} | {name} | {outcome}", flush=True)
"""


def _limit_memory():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_each_reader_refuses_a_fifo_and_a_device_without_blocking_or_reading(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")  # a checkpoint or a download replaced by a link to it
    script = tmp_path / "readers.py"
    script.write_text(textwrap.dedent(READERS))
    done = subprocess.run([sys.executable, str(script), str(fifo), str(zero)],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_memory)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 14, done.stdout
    for line in lines:
        special, reader, outcome = line.split(" | ")
        kind = "FIFO" if special == "fifo" else "character device"
        assert f"not a regular file but a {kind}" in outcome, line
