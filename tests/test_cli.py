import json
import os
import subprocess
import sys

import pytest

from effai_fast import __version__
from effai_fast.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_tour(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "tour" in capsys.readouterr().out


def test_console_script_runs():
    exe = os.path.join(os.path.dirname(sys.executable), "effai")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert __version__ in out.stdout


def test_tour_config_step_writes_report(tmp_path, capsys):
    assert main(["tour", "--only", "config", "-o", str(tmp_path)]) == 0
    assert "OpenMP" in capsys.readouterr().out
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["failures"] == []
    assert (tmp_path / "report.txt").exists()


def test_tour_rejects_unknown_step(capsys):
    assert main(["tour", "--only", "nope"]) == 2
    assert "unknown tour step" in capsys.readouterr().err
