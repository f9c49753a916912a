"""bench/renet_bench.py's pure helpers (FLOP count of the cases, the best
of interleaved rounds, paired ratios) and the step worker's protocol on a
tiny net; the timings themselves are the script's job, never a test's."""
import importlib.util
import os

import pytest

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                     os.pardir, "bench", "renet_bench.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("renet_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_group_gflop_counts_both_layers(bench):
    d = 100
    # Layer 1: 120 x 160 patches of 12 features; layer 2: 60 x 80 patches
    # of 2d * 4 = 800 features; each: projection + recurrence, 2 directions
    # x 4 gates.
    layer1 = 2 * 120 * 160 * (12 + d) * 8 * d
    layer2 = 2 * 60 * 80 * (800 + d) * 8 * d
    assert bench.group_gflop(bench.CASES["A"]) == pytest.approx(
        (layer1 + layer2) / 1e9)
    # A21's second layer scans the 120 x 160 grid pixel by pixel.
    layer2_11 = 2 * 120 * 160 * (2 * d + d) * 8 * d
    assert bench.group_gflop(bench.CASES["A21"]) == pytest.approx(
        (layer1 + layer2_11) / 1e9)


def test_best_round_prefers_idle_then_fastest(bench):
    idle_slow = {"fwd_ms": 100.0, "fwd_load": 0.0, "fwdbwd_ms": 300.0,
                 "fwdbwd_load": 0.0}
    loaded_fast = {"fwd_ms": 80.0, "fwd_load": 0.9, "fwdbwd_ms": 250.0,
                   "fwdbwd_load": 0.0}
    best = bench.best_round(idle_slow, loaded_fast, 0.25)
    # Forward: the idle round wins although slower; forward+backward: the
    # faster round (both idle).
    assert best["fwd_ms"] == 100.0 and best["fwd_load"] == 0.0
    assert best["fwdbwd_ms"] == 250.0
    assert bench.best_round(None, idle_slow, 0.25) == idle_slow
    assert bench.best_round({"error": "x"}, idle_slow, 0.25) == idle_slow
    assert bench.best_round(idle_slow, {"error": "x"}, 0.25) == idle_slow
    # Inputs are left as they were.
    assert idle_slow["fwdbwd_ms"] == 300.0


def test_best_round_keeps_each_timings_own_peak(bench):
    # The SGEMM peak measured alongside a timing travels with it.
    slow = {"fwd_ms": 100.0, "fwd_load": 0.0, "fwd_peak": 200.0,
            "fwdbwd_ms": 250.0, "fwdbwd_load": 0.0, "fwdbwd_peak": 210.0}
    fast_fwd = {"fwd_ms": 80.0, "fwd_load": 0.0, "fwd_peak": 290.0,
                "fwdbwd_ms": 300.0, "fwdbwd_load": 0.0, "fwdbwd_peak": 280.0}
    best = bench.best_round(slow, fast_fwd, 0.25)
    assert (best["fwd_ms"], best["fwd_peak"]) == (80.0, 290.0)
    assert (best["fwdbwd_ms"], best["fwdbwd_peak"]) == (250.0, 210.0)


def test_paired_speedup_is_the_median_of_each_rounds_ratio(bench):
    def rnd(ours, onednn, native, native_load=0.0):
        return {"caffe": {"fwd_ms": ours, "fwd_load": 0.0},
                "torch-onednn": {"fwd_ms": onednn, "fwd_load": 0.0},
                "torch-native": {"fwd_ms": native, "fwd_load": native_load}}
    # Per round: PyTorch's best idle path over ours.
    rounds = [rnd(50.0, 100.0, 90.0),              # 1.8
              rnd(80.0, 100.0, 96.0),              # 1.2
              rnd(40.0, 70.0, 60.0, 0.9)]          # loaded native left out
    assert bench.paired_speedup(rounds, "fwd_ms", 0.25) == pytest.approx(
        1.75)
    # Even counts average the middle two; a loaded or failed round of ours
    # counts for nothing; no usable round gives None.
    assert bench.paired_speedup(rounds[:2], "fwd_ms", 0.25) == \
        pytest.approx(1.5)
    rounds[0]["caffe"]["fwd_load"] = 0.9
    rounds[1]["caffe"] = {"error": "failed"}
    assert bench.paired_speedup(rounds, "fwd_ms", 0.25) == pytest.approx(
        1.75)
    assert bench.paired_speedup(rounds[:2], "fwd_ms", 0.25) is None
    assert bench.paired_speedup(rounds, "fwdbwd_ms", 0.25) is None


def test_step_ratio_pairs_steps_of_the_same_index(bench):
    def steps(*ms, loaded=()):
        return [{"ms": m, "load": 0.9 if i in loaded else 0.0}
                for i, m in enumerate(ms)]
    old = steps(100.0, 50.0, 80.0, 10.0, 40.0)
    # Ratios 0.98, 1.1, 0.95, (loaded: left out), 1.0.
    new = steps(98.0, 55.0, 76.0, 1.0, 40.0, loaded=(3,))
    r = bench.step_ratio(new, old, 0.25)
    assert r["pairs"] == 4
    # Sorted 0.95, 0.98, 1.0, 1.1: median between the middle two, quartiles
    # interpolated as numpy does.
    assert r["median"] == pytest.approx(0.99)
    assert r["q1"] == pytest.approx(0.95 + 0.75 * 0.03)
    assert r["q3"] == pytest.approx(1.0 + 0.25 * 0.1)
    assert bench.step_ratio(old, old, 0.25) == {
        "median": 1.0, "q1": 1.0, "q3": 1.0, "pairs": 5}
    # A failed step (None) drops its pair; no idle pair gives None.
    new[0] = None
    assert bench.step_ratio(new, old, 0.25)["pairs"] == 3
    assert bench.step_ratio(new[3:4], old[3:4], 0.25) is None


def test_step_server_times_each_requested_step(bench):
    import io
    import json
    # One small layer group: 1 x 3 x 8 x 10, 2x2 patches, 4 units.
    case = (1, 3, 8, 10, (2, 2), 4, True)
    out = io.StringIO()
    bench.step_server(case, 1, io.StringIO("fwd\nfwdbwd\nfwd\n\nfwd\n"),
                      out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0] == {"ready": ["fwd", "fwdbwd"]}
    # Three steps, then the empty line stops the server (the fourth
    # request is never served).
    assert len(lines) == 4
    for r in lines[1:]:
        assert r["ms"] > 0 and r["cpu"] >= 0
    out = io.StringIO()
    bench.step_server(case[:-1] + (False,), 0, io.StringIO(""), out)
    assert json.loads(out.getvalue()) == {"ready": ["fwd"]}


def test_step_client_reports_a_worker_that_fails(bench):
    # An unknown case makes the worker exit before it is ready: the client
    # raises with the worker's last line of stderr.
    with pytest.raises(RuntimeError, match="KeyError"):
        bench.StepClient("no-such-case", "/nonexistent", None, 0, 60)


def test_build_variants(bench, tmp_path):
    for label in ("old", "new"):
        d = tmp_path / label / "caffe-src" / "python" / "caffe"
        d.mkdir(parents=True)
        (d / "_caffe.so").write_bytes(b"")
    old, new = str(tmp_path / "old"), str(tmp_path / "new")
    v = bench.build_variants([f"main={old}", f"new={new}"], None)
    assert [x[0] for x in v] == ["main", "new"]
    assert v[1][1] == os.path.join(new, "caffe-src", "python")
    assert v[1][2] is None
    v = bench.build_variants([f"new={new}"], [1, 2])
    assert [(x[0], x[2]) for x in v] == [("new/1t", 1), ("new/2t", 2)]
    v = bench.build_variants([f"new={new}", f"one={new}@1"], [2])
    assert [(x[0], x[2]) for x in v] == [("new/2t", 2), ("one", 1)]
    with pytest.raises(SystemExit, match="LABEL=BUILD_DIR"):
        bench.build_variants([new], None)
    with pytest.raises(SystemExit, match="no built pycaffe"):
        bench.build_variants([f"x={tmp_path}"], None)


def test_thread_scaling_pairs_match_a_build_with_its_default(bench):
    variants = [("main", "/old", None), ("new", "/new", None),
                ("new-1t", "/new", 1), ("new-3t", "/new", 3),
                ("old-1t", "/other", 1)]
    # /other has no default-thread variant: nothing to compare it with.
    assert bench.thread_scaling_pairs(variants) == [("new-1t", "new"),
                                                    ("new-3t", "new")]
    assert bench.thread_scaling_pairs(variants[:2]) == []
