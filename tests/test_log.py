"""Status lines go through `logging` (logger ``tfrestore``): bare lines on stdout by default (stderr is for errors), silenced or
redirected by an application's own settings, and importing tfrestore configures nothing. Each case runs in a
fresh interpreter (logging's configuration is process-wide)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_configures_no_logger():
    r = _run("import logging, tfrestore, tfrestore.core.log, tfrestore.core.store\n"
             "t = logging.getLogger('tfrestore')\n"
             "print(len(t.handlers), t.level, t.propagate, len(logging.getLogger().handlers))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0", "True", "0"]


def test_default_is_a_bare_line_on_stdout():
    r = _run("from tfrestore.core import log\n"
             "log.status('building prior x')\n"
             "log.say(log.logger('tfrestore.models.classifier'), 'classifier line')")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout == "building prior x\nclassifier line\n"


def test_an_applications_level_stands():
    r = _run("import logging\nlogging.getLogger('tfrestore').setLevel(logging.WARNING)\n"
             "from tfrestore.core import log\n"
             "log.status('quiet please')\n"
             "log.say(log.logger('x'), 'loud', logging.WARNING)")
    assert r.returncode == 0, r.stderr
    assert "quiet please" not in r.stdout + r.stderr and "loud" in r.stderr   # (logging's last resort)


def test_an_applications_handler_receives_the_lines(tmp_path):
    target = tmp_path / "run.log"
    r = _run(f"import logging\nlogging.basicConfig(filename={str(target)!r}, level=logging.INFO, "
             f"format='%(name)s|%(message)s')\n"
             "from tfrestore.core import log\n"
             "log.say(log.logger('tfrestore.priors.catalogue'), 'prior trained')")
    assert r.returncode == 0, r.stderr
    # the application configured the root logger only: tfrestore's logger configures itself (stdout) and the
    # line reaches stdout, not the root's file — the documented rule (configure the "tfrestore" logger to redirect)
    assert r.stdout == "prior trained\n"
    r = _run(f"import logging\nh = logging.FileHandler({str(target)!r})\n"
             "h.setFormatter(logging.Formatter('%(name)s|%(message)s'))\n"
             "logging.getLogger('tfrestore').addHandler(h); logging.getLogger('tfrestore').setLevel(logging.INFO)\n"
             "from tfrestore.core import log\n"
             "log.say(log.logger('tfrestore.priors.catalogue'), 'prior trained')")
    assert r.returncode == 0, r.stderr
    assert r.stdout == r.stderr == "" and target.read_text().strip().endswith("tfrestore.priors.catalogue|prior trained")
