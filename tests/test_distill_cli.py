"""``effai distill`` end to end on real digits (a few epochs) and its error path."""

import json

import pytest

from effai_fast.cli import main

pytest.importorskip("sklearn", reason="the digits data set needs scikit-learn")


def test_distill_cli_digits(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["distill", "--dataset", "digits", "--teacher-epochs", "3",
               "--student-epochs", "3", "--seeds", "0", "1", "--student-alpha", "0.25",
               "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    for word in ("teacher", "student, hard labels", "student, distilled T=4", "MACs",
                 "paired t-test"):
        assert word in text
    r = json.loads(out.read_text())
    assert r["n_train"] == 1257 and r["n_test"] == 540
    assert r["teacher"]["macs"] > 5 * r["student_macs"]
    assert len(r["students"]) == 2
    assert all(0.5 < s["hard"] <= 1 and 0.5 < s["kd"] <= 1 for s in r["students"])


def test_distill_cli_bad_arguments(capsys):
    assert main(["distill", "--student-alpha", "-1", "--teacher-epochs", "1"]) == 2
    assert "student_alpha" in capsys.readouterr().out
