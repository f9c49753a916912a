"""Benchmark a ReNet layer group (vertical then horizontal) against PyTorch.

Our group: two Caffe "ReNet" LSTM layers, each with its own patch size
(case A: 2x2 for both, as in the paper's N-ReNet group 1, which reduces the
resolution by 4 per side; A21: 2x2 then 1x1, kept for comparison with
earlier runs). PyTorch's group: patch extraction, nn.LSTM (bidirectional)
over the columns, then patch extraction again and nn.LSTM over the rows, with
torch.set_num_threads(THREADS), timed with its default oneDNN path and with
torch.backends.mkldnn.flags(enabled=False). Both compute the input gradient
in the backward pass. Each (case, framework) runs in its own process, so
that one library's idle threads cannot slow the other, in --rounds rounds
of all frameworks in turn; each framework's best round is reported (a
shared or virtual machine's speed drifts over minutes, by up to 40% on the
one measured here; interleaving gives every framework the same chances).
Beside that speed-up, the "paired" one is the median over rounds of the
ratio within each round, whose frameworks ran seconds apart: it does not
depend on which minutes each framework's best round fell in.

With --builds LABEL=BUILD_DIR[@N] ..., the script times our layer group from
several Caffe builds instead (each worker imports pycaffe from
BUILD_DIR/caffe-src/python). Rounds of whole processes are too coarse on a
VM whose speed changes within seconds, so here every
variant gets one persistent, warmed-up worker, and the script times them
step by step: step i runs one forward (and one forward+backward) in each
variant in turn, starting with a different variant each time, with
--gap seconds of rest before each. For each build and case it reports the
fastest and the median step and the paired ratio of its time to the first
build's: the median over i of the two i-th steps' ratio, timed within a
second of each other (below 1: faster), with its quartiles. "@N" times
that build with HRENET_THREADS=N, and --layer-threads N ... times every
build without "@" with each N (a build from before HRENET_THREADS ignores
it): "--builds old=OLD new=NEW new1=NEW@1" gives the new build's ratio to
the old one and, from new1 against new, how the layer scales from one
thread to the default (all CPUs).

For every measurement the script reads the CPU time that the whole machine
spent (/proc/stat) minus its own (the worker's) CPU time: that is the other
load, in cores. A ratio measured while other processes used more than
--max-other-load cores is not reported ("n/a (load)"): with 2 threads,
anyone else's work wrecks the per-step GEMM timings.

GFLOP/s counts the matrix products only (input projection and recurrence,
both directions; backward twice the forward) and is given as a fraction of a
float32 SGEMM peak (4096^3, THREADS threads) measured in the same run through
the BLAS that Caffe links: the run's peak (the higher of before and after all
cases) and, for our layer, also the peak measured in the same worker process
just before and after each of its timings (the higher of the two). A VM's
speed drifts over minutes, so the second is the fraction under the same
conditions; the first is the conservative figure. Results: a Markdown table
on stdout and JSON (--json).
"""
import argparse
import json
import os
import subprocess
import sys
import time

from hrenet.files import write_json

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (N, C, H, W, (patch of the vertical layer, of the horizontal), d,
#        backward)
CASES = {
    "A": (1, 3, 240, 320, (2, 2), 100, True),
    "A21": (1, 3, 240, 320, (2, 1), 100, True),
    "B": (1, 1024, 50, 63, (1, 1), 120, True),
    "B10": (10, 1024, 50, 63, (1, 1), 120, True),
    "C": (1, 2048, 50, 63, (1, 1), 120, True),
    "D": (1, 1024, 47, 63, (1, 1), 120, False),
}
# The cases (A21 is an extra).
DEFAULT_CASES = ["A", "B", "B10", "C", "D"]
FRAMEWORKS = ["caffe", "torch-onednn", "torch-native"]


# --------------------------------------------------------------------------
# measurement helpers

def _machine_cpu_seconds():
    """CPU-seconds the whole machine spent busy so far (all cores)."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds():
    t = os.times()
    return t.user + t.system


def timed(fn, repeats, warmup):
    """Median wall time (ms) of fn over `repeats` runs after `warmup`, and
    the other processes' average load in cores during the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    m0, o0 = _machine_cpu_seconds(), _own_cpu_seconds()
    w0 = time.perf_counter()
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - w0
    other = ((_machine_cpu_seconds() - m0) - (_own_cpu_seconds() - o0)) / wall
    times.sort()
    return 1e3 * times[len(times) // 2], max(0.0, other)


def group_gflop(case):
    """Matrix-product GFLOP of the layer group's forward pass."""
    n, c, h, w, (p1, p2), d, _ = case
    flop = 0
    # The two layers: input channels, patch, input size.
    for k, p in ((c, p1), (2 * d, p2)):
        h, w = -(-h // p), -(-w // p)
        pos = n * h * w
        flop += 2 * pos * k * p * p * 8 * d  # projection, 2 dirs x 4 gates
        flop += 2 * pos * d * 8 * d  # recurrence
    return flop / 1e9


# --------------------------------------------------------------------------
# workers (each runs in its own process)

def _caffe_group(case):
    """Our layer group for `case` as a pycaffe net with random input and,
    for cases with a backward pass, a random top gradient; returns the net
    and the steps to time: {"fwd": ..., "fwdbwd": ...}."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import numpy as np
    import caffe
    caffe.set_mode_cpu()
    n, c, h, w, (p1, p2), d, backward = case
    proto = f"""
force_backward: {"true" if backward else "false"}
layer {{ name: "data" type: "Input" top: "data"
  input_param {{ shape {{ dim: {n} dim: {c} dim: {h} dim: {w} }} }} }}
layer {{ name: "renet_v" type: "ReNet" bottom: "data" top: "v"
  renet_param {{ num_output: {d} direction: VERTICAL patch_h: {p1}
    patch_w: {p1} }} }}
layer {{ name: "renet_h" type: "ReNet" bottom: "v" top: "out"
  renet_param {{ num_output: {d} direction: HORIZONTAL patch_h: {p2}
    patch_w: {p2} }} }}
"""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt") as f:
        f.write(proto)
        f.flush()
        net = caffe.Net(f.name, caffe.TRAIN)
    rng = np.random.RandomState(0)
    net.blobs["data"].data[...] = rng.randn(n, c, h, w)
    steps = {"fwd": net.forward}
    if backward:
        net.forward()
        net.blobs["out"].diff[...] = rng.randn(*net.blobs["out"].shape)

        def fwdbwd():
            net.forward()
            net.backward()
        steps["fwdbwd"] = fwdbwd
    return net, steps


def worker_caffe(case, threads, repeats, warmup, peaks=True):
    net, steps = _caffe_group(case)
    out = {}
    # The SGEMM peak before, between and after the timings: each timing's
    # own reference (the higher of the two around it), taken in the same
    # minute as the timing (the machine's speed drifts over minutes).
    peak = sgemm_gflops if peaks else (lambda threads: None)
    peaks = [peak(threads)]
    out["fwd_ms"], out["fwd_load"] = timed(steps["fwd"], repeats, warmup)
    peaks.append(peak(threads))
    if peaks[-1] is not None:
        out["fwd_peak"] = max(peaks[-2:])
    if "fwdbwd" in steps:
        out["fwdbwd_ms"], out["fwdbwd_load"] = timed(steps["fwdbwd"],
                                                     repeats, warmup)
        peaks.append(peak(threads))
        if peaks[-1] is not None:
            out["fwdbwd_peak"] = max(peaks[-2:])
    return out


def step_server(case, warmup, stdin=None, stdout=None):
    """Serve timed steps of our layer group, one per request: after the
    warm-up it writes {"ready": [step names]} and then, for each line
    naming a step read from stdin, runs that step once and writes
    {"ms": wall time, "cpu": this process's CPU seconds during it}; an
    empty line or end of input stops it. Between requests it waits in a
    blocking read, using no CPU, so that the parent can time several
    builds' servers alternately, step by step."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    _, steps = _caffe_group(case)
    for step in steps.values():
        for _ in range(warmup):
            step()
    stdout.write(json.dumps({"ready": sorted(steps)}) + "\n")
    stdout.flush()
    for line in stdin:
        name = line.strip()
        if not name:
            break
        c0, t0 = _own_cpu_seconds(), time.perf_counter()
        steps[name]()
        ms = 1e3 * (time.perf_counter() - t0)
        stdout.write(json.dumps({"ms": ms,
                                 "cpu": _own_cpu_seconds() - c0}) + "\n")
        stdout.flush()


def worker_torch(case, threads, repeats, warmup, onednn):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    n, c, h, w, (p1, p2), d, backward = case
    gh, gw = -(-h // p1), -(-w // p1)       # the vertical layer's grid
    gh2, gw2 = -(-gh // p2), -(-gw // p2)   # the horizontal layer's grid
    lstm_v = torch.nn.LSTM(c * p1 * p1, d, bidirectional=True)
    lstm_h = torch.nn.LSTM(2 * d * p2 * p2, d, bidirectional=True)
    x = torch.randn(n, c, h, w)

    def patches(inp, p, gh, gw):
        """N x C x H x W -> N x gh x gw x (C p p), features in (c, dy, dx)
        order, zero-padded at the bottom/right."""
        nn_, cc, hh, ww = inp.shape
        if gh * p != hh or gw * p != ww:
            inp = torch.nn.functional.pad(
                inp, (0, gw * p - ww, 0, gh * p - hh))
        t = inp.reshape(nn_, cc, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        return t.reshape(nn_, gh, gw, cc * p * p)

    def group(inp):
        t = patches(inp, p1, gh, gw).permute(1, 0, 2, 3)
        t = t.reshape(gh, n * gw, -1)                 # columns, top->bottom
        v, _ = lstm_v(t)                              # gh x (n gw) x 2d
        v = v.reshape(gh, n, gw, 2 * d).permute(1, 3, 0, 2)  # N 2d gh gw
        r = patches(v, p2, gh2, gw2).permute(2, 0, 1, 3)
        r = r.reshape(gw2, n * gh2, -1)               # rows, left->right
        o, _ = lstm_h(r)
        return o.reshape(gw2, n, gh2, 2 * d).permute(1, 3, 2, 0)

    out = {}
    with torch.backends.mkldnn.flags(enabled=onednn):
        def fwd():
            with torch.no_grad():
                group(x)
        out["fwd_ms"], out["fwd_load"] = timed(fwd, repeats, warmup)
        if backward:
            xg = x.clone().requires_grad_(True)
            grad = torch.randn(n, 2 * d, gh2, gw2)

            def step():
                xg.grad = None
                group(xg).backward(grad)
            out["fwdbwd_ms"], out["fwdbwd_load"] = timed(step, repeats,
                                                         warmup)
    out["torch"] = torch.__version__
    return out


def _blas_library():
    """Path of the BLAS library loaded with Caffe in this process."""
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "/" in line}
    for key in ("libmkl_rt", "libopenblas", "libblas"):
        for path in sorted(paths):
            if key in os.path.basename(path):
                return path
    raise RuntimeError("no BLAS library found among Caffe's libraries")


def sgemm_gflops(threads, repeats=3, full=False):
    """GFLOP/s of a float32 SGEMM 4096^3 on `threads` threads through the
    BLAS that Caffe links (median of `repeats` after one warm-up); with
    full, a dict that adds the other load and the library's path."""
    import ctypes
    import numpy as np
    import caffe  # noqa: F401  (loads the BLAS Caffe links)
    path = _blas_library()
    blas = ctypes.CDLL(path)
    for setter in ("openblas_set_num_threads", "MKL_Set_Num_Threads"):
        if hasattr(blas, setter):
            getattr(blas, setter)(threads)
    size = 4096
    a = np.random.rand(size, size).astype(np.float32)
    b = np.random.rand(size, size).astype(np.float32)
    cm = np.zeros((size, size), np.float32)
    ptr = ctypes.POINTER(ctypes.c_float)
    args = (101, 111, 111, size, size, size, ctypes.c_float(1.0),
            a.ctypes.data_as(ptr), size, b.ctypes.data_as(ptr), size,
            ctypes.c_float(0.0), cm.ctypes.data_as(ptr), size)
    ms, load = timed(lambda: blas.cblas_sgemm(*args), repeats, 1)
    gflops = 2 * size ** 3 / ms / 1e6
    return {"gflops": gflops, "load": load, "blas": path} if full else gflops


# --------------------------------------------------------------------------
# driver

def best_round(best, new, max_load):
    """Per timing key, the better of two rounds' results: an idle
    measurement beats a loaded one, then the lower median wins."""
    if best is None or "error" in best:
        return new
    if "error" in new:
        return best
    out = dict(best)
    for key in ("fwd_ms", "fwdbwd_ms"):
        if key not in new:
            continue
        load_key = key.replace("ms", "load")
        old_rank = (best.get(load_key, 0) > max_load, best.get(key, 1e30))
        new_rank = (new[load_key] > max_load, new[key])
        if new_rank < old_rank:
            out[key], out[load_key] = new[key], new[load_key]
            peak_key = key.replace("ms", "peak")
            if peak_key in new:
                out[peak_key] = new[peak_key]
    return out


def paired_speedup(rounds, key, max_load):
    """Median over rounds of PyTorch's best idle path in that round over our
    idle time in the same round (rounds: one dict per round, framework ->
    worker result), or None when no round has both. The frameworks of a
    round run within seconds of each other, so the ratio does not depend on
    which minutes (fast or slow ones on a drifting VM) each framework's best
    round fell in."""
    load_key = key.replace("ms", "load")

    def idle(r):
        return (r is not None and "error" not in r and key in r
                and r[load_key] <= max_load)
    ratios = []
    for rnd in rounds:
        ours = rnd.get("caffe")
        theirs = [r[key] for fw, r in rnd.items() if fw != "caffe"
                  and idle(r)]
        if idle(ours) and theirs:
            ratios.append(min(theirs) / ours[key])
    if not ratios:
        return None
    ratios.sort()
    mid = len(ratios) // 2
    return (ratios[mid] if len(ratios) % 2 else
            (ratios[mid - 1] + ratios[mid]) / 2)


def step_ratio(num, den, max_load):
    """The paired ratio of two variants timed step by step in alternation:
    num[i] and den[i] are the i-th step of each ({"ms": ..., "load": other
    processes' cores during it}, or None where it failed), measured within
    a second of each other. Returns {"median", "q1", "q3", "pairs"} of
    num[i]["ms"] / den[i]["ms"] over the steps where both ran with load <=
    max_load (q1, q3: the quartiles, the spread the VM leaves), or None
    when there is no such step."""
    def idle(r):
        return r is not None and r["load"] <= max_load
    ratios = sorted(a["ms"] / b["ms"] for a, b in zip(num, den)
                    if idle(a) and idle(b))
    if not ratios:
        return None

    def quantile(q):
        # Linear interpolation between order statistics (numpy's default).
        x = q * (len(ratios) - 1)
        lo = int(x)
        hi = min(lo + 1, len(ratios) - 1)
        return ratios[lo] + (ratios[hi] - ratios[lo]) * (x - lo)
    return {"median": quantile(0.5), "q1": quantile(0.25),
            "q3": quantile(0.75), "pairs": len(ratios)}


def build_variants(builds, layer_threads):
    """The (label, pycaffe directory, HRENET_THREADS or None) of each
    variant to time: every build (LABEL=BUILD_DIR, or LABEL=BUILD_DIR@N for
    HRENET_THREADS=N) with every layer thread count, the first build's
    first thread count first."""
    variants = []
    for spec in builds:
        label, sep, path = spec.partition("=")
        own = None
        head, at, tail = path.rpartition("@")
        if at and tail.isdigit():
            path, own = head, int(tail)
        if not sep or not label or not path:
            raise SystemExit(f"error: --builds takes LABEL=BUILD_DIR[@N], "
                             f"got {spec!r}")
        pydir = os.path.join(os.path.abspath(path), "caffe-src", "python")
        if not os.path.isfile(os.path.join(pydir, "caffe", "_caffe.so")):
            raise SystemExit(f"error: {path} has no built pycaffe "
                             f"({pydir}/caffe/_caffe.so); build it first")
        if own is not None:
            variants.append((label, pydir, own))
            continue
        for n in layer_threads or [None]:
            name = label if n is None else f"{label}/{n}t"
            variants.append((name, pydir, n))
    return variants


def run_worker(argv, timeout, extra_env=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker"] + argv
    env = dict(os.environ)
    env.update(extra_env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def thread_scaling_pairs(variants):
    """(label, base label) for each variant timed with its own
    HRENET_THREADS whose build is also timed with the default thread
    count: the pairs whose ratio is the layer's thread scaling."""
    default = {}
    for label, pydir, n in variants:
        if n is None:
            default.setdefault(pydir, label)
    return [(label, default[pydir]) for label, pydir, n in variants
            if n is not None and pydir in default]


class StepClient:
    """A step_server worker of one variant, started and warmed up at once;
    step(name) times one step in it."""

    def __init__(self, case_name, pydir, layer_threads, warmup, timeout):
        env = dict(os.environ)
        env["PYTHONPATH"] = pydir + os.pathsep + env.get("PYTHONPATH", "")
        if layer_threads is not None:
            env["HRENET_THREADS"] = str(layer_threads)
        import tempfile
        self.stderr = tempfile.TemporaryFile("w+")
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", "steps",
             case_name, "--warmup", str(warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.stderr, text=True, env=env)
        self.ready = self._reply()["ready"]

    def _reply(self):
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            self.stderr.seek(0)
            lines = self.stderr.read().strip().splitlines()
            why = lines[-1] if lines else (
                "no reply in %d s" % self.timeout if not ready else "exited")
            raise RuntimeError(why)
        return json.loads(line)

    def step(self, name):
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                   choices=list(CASES), help="cases to run")
    p.add_argument("--frameworks", nargs="+", default=FRAMEWORKS,
                   choices=FRAMEWORKS, help="implementations to time")
    p.add_argument("--threads", type=int, default=2,
                   help="BLAS / torch threads")
    p.add_argument("--repeats", type=int, default=10,
                   help="timed runs per measurement (median reported; "
                        "not with --builds, which times single steps)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of all implementations in turn per case; "
                        "each implementation's best round is reported "
                        "(not with --builds: see --steps)")
    p.add_argument("--max-other-load", type=float, default=0.25,
                   help="other processes' load (cores) above which no ratio "
                        "is reported")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds allowed per worker process")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--builds", nargs="+", metavar="LABEL=BUILD_DIR[@N]",
                   help="time our layer from these Caffe builds against "
                        "each other (the first is the reference) instead "
                        "of against PyTorch; @N: with HRENET_THREADS=N")
    p.add_argument("--layer-threads", nargs="+", type=int,
                   help="with --builds: HRENET_THREADS values to time each "
                        "build with (None: left unset)")
    p.add_argument("--steps", type=int, default=30,
                   help="with --builds: alternating steps per case")
    p.add_argument("--gap", type=float, default=0.2,
                   help="with --builds: seconds of rest before each step, "
                        "so that the previous worker's BLAS threads have "
                        "gone to sleep")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _fill_peak(row, peak):
    """Replace the @PEAK<gflops>@ placeholder by the percentage of peak."""
    head, _, rest = row.partition("@PEAK")
    if not rest:
        return row
    value, _, tail = rest.partition("@")
    return f"{head}{100 * float(value) / peak:.0f}%{tail}"


def _fmt(v, spec="{:.0f}"):
    return "-" if v is None else spec.format(v)


def main(args):
    if args.worker:
        kind = args.worker[0]
        if kind == "steps":
            step_server(CASES[args.worker[1]], args.warmup)
            return 0
        if kind == "sgemm":
            res = sgemm_gflops(args.threads, 3, full=True)
        else:
            case = CASES[args.worker[1]]
            if kind == "caffe":
                res = worker_caffe(case, args.threads, args.repeats,
                                   args.warmup, peaks=args.worker[2:] !=
                                   ["no-peak"])
            else:
                res = worker_torch(case, args.threads, args.repeats,
                                   args.warmup, kind == "torch-onednn")
        print(json.dumps(res))
        return 0

    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)
    os.environ["MKL_NUM_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    if args.builds:
        return compare_builds(args)
    common = ["--threads", str(args.threads), "--repeats", str(args.repeats),
              "--warmup", str(args.warmup)]
    print(f"# ReNet group benchmark: {args.threads} threads, median of "
          f"{args.repeats} runs after {args.warmup} warm-up, best of "
          f"{args.rounds} interleaved rounds", flush=True)

    def measure_peak():
        p = run_worker(["sgemm"] + common, args.timeout)
        if "error" in p:
            raise SystemExit(f"error: SGEMM peak measurement failed: "
                             f"{p['error']}")
        print(f"# SGEMM 4096^3: {p['gflops']:.1f} GFLOP/s "
              f"({os.path.basename(p['blas'])}; other load "
              f"{p['load']:.2f} cores)", flush=True)
        return p

    # The peak is measured before and after the cases; the higher counts
    # (a measurement under load reads low).
    peak = measure_peak()
    results = {"peak": peak, "threads": args.threads,
               "repeats": args.repeats, "cases": {}}
    rows = []
    for name in args.cases:
        case = CASES[name]
        gflop = group_gflop(case)
        res = {}
        rounds = []
        # Rounds of all implementations in turn; each keeps its best round
        # (lowest median, among the rounds measured without load where there
        # are some): the machine's speed drifts over minutes, and
        # interleaving gives every implementation the same chances.
        for rnd in range(args.rounds):
            rounds.append({})
            for fw in args.frameworks:
                t0 = time.time()
                r = run_worker([fw, name] + common, args.timeout)
                print(f"# {name} {fw} round {rnd + 1}: {json.dumps(r)} "
                      f"({time.time() - t0:.0f} s)", flush=True)
                res[fw] = best_round(res.get(fw), r, args.max_other_load)
                rounds[-1][fw] = r
        results["cases"][name] = res
        torch_fws = [fw for fw in ("torch-onednn", "torch-native")
                     if fw in res and "error" not in res[fw]]
        for fw in args.frameworks:
            r = res[fw]
            if "error" in r:
                rows.append(f"| {name} | {fw} | error: {r['error']} "
                            "| | | | | |")
                continue
            loads = [r.get("fwd_load", 0), r.get("fwdbwd_load", 0)]
            ratio = {}
            for key in ("fwd_ms", "fwdbwd_ms"):
                load_key = key.replace("ms", "load")
                if fw != "caffe" or key not in r:
                    continue
                # PyTorch's best path among those measured without load;
                # "*" when a loaded path was left out.
                idle = [res[t][key] for t in torch_fws if key in res[t]
                        and res[t][load_key] <= args.max_other_load]
                left_out = any(key in res[t] and res[t][load_key] >
                               args.max_other_load for t in torch_fws)
                if not any(key in res[t] for t in torch_fws):
                    ratio[key] = "n/a (no PyTorch timing)"
                elif r[load_key] > args.max_other_load or not idle:
                    ratio[key] = "n/a (load)"
                else:
                    ratio[key] = (f"{min(idle) / r[key]:.2f}x"
                                  + ("*" if left_out else ""))
                # And the median of the rounds' own ratios.
                paired = paired_speedup(rounds, key, args.max_other_load)
                r[key.replace("ms", "paired_speedup")] = paired
                if paired is not None:
                    ratio[key] += f" (paired {paired:.2f}x)"
            key = "fwdbwd_ms" if "fwdbwd_ms" in r else "fwd_ms"
            gf = gflop * (3 if key == "fwdbwd_ms" else 1) / (r[key] / 1e3)
            r["gflops"] = gf
            # Ours also against the peak measured alongside that timing.
            near = r.get(key.replace("ms", "peak"))
            if near:
                r["peak_fraction_alongside"] = gf / near
            alongside = f"; {100 * gf / near:.0f}%" if near else ""
            rows.append(
                f"| {name} | {fw} | {_fmt(r.get('fwd_ms'))} | "
                f"{_fmt(r.get('fwdbwd_ms'))} | {ratio.get('fwd_ms', '')} | "
                f"{ratio.get('fwdbwd_ms', '')} | {gf:.1f} "
                f"(@PEAK{gf:.6f}@{alongside}) | {max(loads):.2f} |")
    after = measure_peak()
    if after["gflops"] > peak["gflops"]:
        peak = after
    results["peak"] = peak
    for name in results["cases"]:
        for fw, r in results["cases"][name].items():
            if "gflops" in r:
                r["peak_fraction"] = r["gflops"] / peak["gflops"]
    rows = [_fill_peak(row, peak["gflops"]) for row in rows]
    print(f"\n# SGEMM peak used: {peak['gflops']:.1f} GFLOP/s")
    print()
    print("| case | implementation | fwd ms | fwd+bwd ms | fwd speed-up | "
          "fwd+bwd speed-up | GFLOP/s (% of SGEMM peak; of the peak "
          "alongside) | other load (cores) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print("\nSpeed-up: PyTorch's best path time / ours (>1: we are faster), "
          "over the paths measured with other load <= "
          f"{args.max_other_load} cores (*: a loaded path left out), each "
          "framework's best round; paired: the median over rounds of the "
          "same ratio within each round. "
          "GFLOP/s over fwd+bwd where timed, else fwd; % of the run's SGEMM "
          "peak (the higher of before and after all cases) and, for ours, "
          "of the peak measured in the same worker just before and after "
          "that timing (the higher of the two).")
    if args.json:
        write_json(args.json, results)
    return 0


def compare_builds(args):
    """Our layer group from several builds (and layer thread counts), one
    persistent worker each, timed step by step in alternation: step i runs
    a forward (and a forward+backward) in every variant in turn, starting
    with a different variant each time; per case, each variant's fastest
    and median step and its paired ratio to the first variant (the median
    over i of the two i-th steps' ratio)."""
    variants = build_variants(args.builds, args.layer_threads)
    print(f"# ReNet group, builds compared: "
          f"{', '.join(f'{v[0]} ({v[1]})' for v in variants)}; "
          f"{args.threads} BLAS threads, {args.steps} alternating steps "
          f"after {args.warmup} warm-up, {args.gap} s between steps",
          flush=True)
    ref = variants[0][0]
    thread_pairs = thread_scaling_pairs(variants)
    thread_rows = []
    results = {"threads": args.threads, "steps": args.steps,
               "gap_s": args.gap, "max_other_load": args.max_other_load,
               "variants": [v[0] for v in variants], "cases": {}}
    rows = []
    for name in args.cases:
        clients = {}
        times = {label: {} for label, _, _ in variants}
        t_case = time.time()
        try:
            for label, pydir, n in variants:
                clients[label] = StepClient(name, pydir, n, args.warmup,
                                            args.timeout)
            keys = clients[ref].ready
            for i in range(args.steps):
                k = i % len(variants)
                for key in keys:
                    for label, _, _ in variants[k:] + variants[:k]:
                        time.sleep(args.gap)
                        m0, o0 = _machine_cpu_seconds(), _own_cpu_seconds()
                        w0 = time.perf_counter()
                        r = clients[label].step(key)
                        wall = time.perf_counter() - w0
                        other = ((_machine_cpu_seconds() - m0) - r["cpu"] -
                                 (_own_cpu_seconds() - o0)) / wall
                        times[label].setdefault(key, []).append(
                            {"ms": r["ms"], "load": max(0.0, other)})
                if (i + 1) % 10 == 0 or i + 1 == args.steps:
                    print(f"# {name}: step {i + 1}/{args.steps} "
                          f"({time.time() - t_case:.0f} s)", flush=True)
        except RuntimeError as e:
            rows.append(f"| {name} | - | error: {e} | | | | |")
            results["cases"][name] = {"error": str(e)}
            continue
        finally:
            for c in clients.values():
                c.close()
        case = {"steps": times, "summary": {}}
        for label, _, _ in variants:
            summary = {}
            cells = []
            for key in ("fwd", "fwdbwd"):
                steps = times[label].get(key)
                if not steps:
                    cells += ["-", "-"]
                    continue
                idle = sorted(r["ms"] for r in steps
                              if r["load"] <= args.max_other_load)
                ratio = step_ratio(steps, times[ref][key],
                                   args.max_other_load)
                summary[key] = {"best_ms": idle[0] if idle else None,
                                "median_ms": (idle[len(idle) // 2]
                                              if idle else None),
                                "ratio": ratio}
                cells.append(f"{_fmt(summary[key]['best_ms'])} / "
                             f"{_fmt(summary[key]['median_ms'])}")
                cells.append("-" if ratio is None else
                             f"{ratio['median']:.3f} [{ratio['q1']:.2f}, "
                             f"{ratio['q3']:.2f}] ({ratio['pairs']})")
            loads = [r["load"] for steps in times[label].values()
                     for r in steps]
            case["summary"][label] = summary
            rows.append(f"| {name} | {label} | " + " | ".join(cells) +
                        f" | {max(loads):.2f} |")
        for label, base in thread_pairs:
            scaling = {}
            cells = []
            for key in ("fwd", "fwdbwd"):
                steps = times[label].get(key)
                ratio = (step_ratio(steps, times[base][key],
                                    args.max_other_load) if steps else None)
                best = [case["summary"][v].get(key, {}).get("best_ms")
                        for v in (label, base)]
                scaling[key] = {"ratio": ratio, "best_ratio": (
                    best[0] / best[1] if None not in best else None)}
                cells.append("-" if not ratio else
                             f"{ratio['median']:.2f} [{ratio['q1']:.2f}, "
                             f"{ratio['q3']:.2f}]")
                cells.append(_fmt(scaling[key]["best_ratio"], "{:.2f}"))
            case.setdefault("threads", {})[f"{label}/{base}"] = scaling
            thread_rows.append(f"| {name} | {label} over {base} | " +
                               " | ".join(cells) + " |")
        results["cases"][name] = case
    print()
    print(f"| case | build | fwd ms best / median | fwd ratio to {ref} | "
          f"fwd+bwd ms best / median | fwd+bwd ratio to {ref} | "
          "max other load (cores) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print(f"\nms: over the steps with other load <= {args.max_other_load} "
          f"cores. Ratio: the median over steps of the step's time over "
          f"{ref}'s step of the same index, timed within a second of it "
          "(below 1: faster); [quartiles]; (steps counted).")
    if thread_rows:
        print()
        print("| case | threads | fwd step ratio | fwd best-step ratio | "
              "fwd+bwd step ratio | fwd+bwd best-step ratio |")
        print("|---|---|---|---|---|---|")
        for row in thread_rows:
            print(row)
        print("\nThread scaling: a build timed with HRENET_THREADS=N over "
              "the same build with the default (all CPUs): the median of "
              "the paired step ratios [quartiles], and its fastest step "
              "over the other's.")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
