"""Runs edited_state_cases.py in a child process with a time limit: a layer state edited
between forward and backward once crashed the process, and a regression must fail a test,
not end the suite."""
from pathlib import Path

from test_concurrency import run_script

CASES = str(Path(__file__).with_name("edited_state_cases.py"))


def test_edited_state_cases_pass_in_a_child_process():
    script = ("import sys, pytest\n"
              "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[2]]))")
    out = run_script(script, CASES)
    assert " passed" in out and "failed" not in out, out[-3000:]
