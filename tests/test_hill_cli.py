"""The ``effai hill fit`` command and the tour step."""

import csv

import numpy as np
import pytest

from effai_fast.cli import main
from effai_fast.hill import hill


def test_cli_fit_writes_csv_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    dose = [0, 0.1, 0.3, 1, 3, 10, 30]
    path = tmp_path / "curves.csv"
    with open(path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["curve", "dose", "response"])
        for c in range(3):
            for d in dose[: 7 - c]:
                wr.writerow([f"c{c}", d, hill(d, 0, 100, 2.0, 1.5) + rng.normal(0, 2)])
    out = tmp_path / "fits.csv"
    assert main(["hill", "fit", str(path), "-o", str(out), "--plot",
                 str(tmp_path / "f.png")]) == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["curve"] for r in rows] == ["c0", "c1", "c2"]
    assert abs(float(rows[0]["ec50"]) - 2) < 0.5
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_cli_bad_csv(tmp_path, capsys):
    p = tmp_path / "bad.csv"
    p.write_text("curve,dose,response\na,x,1\n")
    assert main(["hill", "fit", str(p), "-o", str(tmp_path / "o.csv")]) == 2
    assert "number" in capsys.readouterr().err
