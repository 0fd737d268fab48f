"""What a new user hits (issue 25): every mistake is one `error:` line and exit code 2, before any work starts."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def main_py(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def one_error_line(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.returncode, r.stderr[-800:])
    assert "Traceback" not in r.stderr and "FATAL" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("args,words", [
    (["--paper=mv2015", "--stpes=10"], "Did you mean: steps"),
    (["--paper=mv2015", "--steps=abc"], "--steps=abc"),
    (["--paper=mv2015", "conv3"], "unexpected argument 'conv3'"),
    ([], "--list"),
    (["--steps=3"], "--paper is required"),
])
def test_flag_mistakes_are_one_line_and_exit_2_before_tensorflow_starts(args, words):
    r = main_py(*args, timeout=60)
    assert words in one_error_line(r)
    assert r.stdout == ""
