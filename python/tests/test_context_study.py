"""bench/context_study.py: the main job over the synthetic family, on its
smoke settings (the real study is a benchmark, run by hand)."""
import json
import os

from _tools import TOOLS, load_tool

BENCH = os.path.join(TOOLS, os.pardir, "bench")


def test_quick_study_tabulates_and_resumes(tmp_path, capsys):
    study = load_tool("context_study", BENCH)
    out = tmp_path / "study"
    argv = ["--quick", "--variants", "corner-64x80-k3-wide", "ring-96x128-k3",
            "--seed-base", "7", "--out", str(out)]
    rc = study.main(study.parse_args(argv))
    results = json.loads((out / "results.json").read_text())
    rows = results["rows"]
    assert [(r["variant"], r["seed"]) for r in rows] == [
        ("corner-64x80-k3-wide", 7 + 10 * 8), ("ring-96x128-k3", 7 + 10 * 4)]
    for r in rows:
        for m in ("nrenet", "baseline"):
            assert 0 <= r[m]["miou"] <= 1
            assert r[m]["iterations"] == 20 and r[m]["stop"] == "iters"
        assert r["gap"] == r["nrenet"]["miou"] - r["baseline"]["miou"]
    # smoke settings train 20 iterations: no target can be met, rc 1
    assert rc == 1 and not any(r["met"] for r in rows)
    assert [r["seen"] for r in rows] == [False, False]
    md = (out / "results.md").read_text()
    assert "| corner-64x80-k3-wide (seed 87) | 64x80 | 3 | corner |" in md
    assert "of 2 runs meet the targets" in md and "median" in md
    report = out / "ring-96x128-k3-s47" / "report.json"
    stamp = report.stat().st_mtime_ns
    study.main(study.parse_args(argv + ["--resume"]))
    assert report.stat().st_mtime_ns == stamp  # kept, not run again
    assert json.loads((out / "results.json").read_text())["rows"] == rows
    # a kept run made with other settings is refused, not mixed in
    rc = study.main(study.parse_args(argv + ["--resume", "--budget", "1m"]))
    assert rc == 1
    assert "--resume needs the same --budget" in capsys.readouterr().err
