"""Benchmark the DenseCRF layer (through pycaffe, CPU) against pydensecrf.

Same photograph (skimage's chelsea, resized to 500 x 375), 21 labels, smooth
random unaries, the released model's parameters (bilateral theta_alpha 80,
theta_beta 3, w 5; spatial theta_gamma 3, w 3), at 2, 5 and 10 mean-field
iterations. Timings are set-up + inference for one image: for pydensecrf the
DenseCRF2D construction, unary, both kernels (lattice builds) and inference;
for the layer the whole pycaffe call (copy in, forward with both lattice
builds, copy out); the layer's one-off net construction per input shape is
timed separately. Runs of the implementations are interleaved, each timing
is the best and the median of --repeats runs. Peak memory above the input
data is measured in a fresh child process per implementation: the peak
resident set is reset (/proc/self/clear_refs) once the inputs are made and
the library is imported, and VmHWM after one 5-iteration run minus VmRSS
before it is reported (for the layer this includes the net's blobs: the
copies of the inputs and the output). Label agreement with pydensecrf is
reported for every iteration count.

pydensecrf is optional (pip install pydensecrf2); without it only the layer
is timed.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")

HEIGHT, WIDTH = 375, 500
PARAMS = dict(pos_w=3.0, pos_xy_std=3.0, bi_w=5.0, bi_xy_std=80.0,
              bi_rgb_std=3.0)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--iters", type=int, nargs="+", default=[2, 5, 10],
                        help="mean-field iteration counts")
    parser.add_argument("--labels", type=int, default=21,
                        help="number of labels")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs per implementation and count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="CPU thread counts of the layer to time")
    parser.add_argument("--json", default="bench/results/crf_bench.json",
                        help="where to write the results (JSON)")
    parser.add_argument("--child", choices=["pydensecrf", "layer"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", type=int, default=1,
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_inputs(num_labels, seed=0):
    """(scores L x H x W float32, image H x W x 3 uint8 RGB)."""
    from scipy.ndimage import zoom
    from skimage import data, transform
    rgb = (transform.resize(data.chelsea(), (HEIGHT, WIDTH),
                            anti_aliasing=True) * 255).round().astype(np.uint8)
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((num_labels, 12, 16))
    fine = zoom(coarse, (1, HEIGHT / 12.0, WIDTH / 16.0), order=1)
    scores = np.ascontiguousarray(3.0 * fine[:, :HEIGHT, :WIDTH],
                                  dtype=np.float32)
    return scores, np.ascontiguousarray(rgb)


def have_pydensecrf():
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def run_pydensecrf(scores, rgb, iters):
    import pydensecrf.densecrf as dcrf
    num_labels = scores.shape[0]
    crf = dcrf.DenseCRF2D(WIDTH, HEIGHT, num_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(-scores.reshape(num_labels, -1)))
    crf.addPairwiseGaussian(sxy=PARAMS["pos_xy_std"], compat=PARAMS["pos_w"])
    crf.addPairwiseBilateral(sxy=PARAMS["bi_xy_std"],
                             srgb=PARAMS["bi_rgb_std"], rgbim=rgb,
                             compat=PARAMS["bi_w"])
    return np.array(crf.inference(iters)).reshape(scores.shape)


def make_layer(iters, threads):
    import caffe
    from hrenet.crf import DenseCRF
    caffe.set_mode_cpu()
    return DenseCRF(max_iter=iters, num_threads=threads, **PARAMS)


def timed(fn, cpu=None):
    """Wall seconds of fn() (CPU seconds of the process appended to `cpu`)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start, out


def child_memory(args):
    """Peak memory (MiB) of one run above the state with inputs made."""
    scores, rgb = make_inputs(args.labels)
    if args.child == "pydensecrf":
        import pydensecrf.densecrf  # noqa: F401
        fn = lambda: run_pydensecrf(scores, rgb, 5)  # noqa: E731
    else:
        import caffe  # noqa: F401
        crf = make_layer(5, args.child_threads)
        fn = lambda: crf(scores, rgb, channel_order="rgb")  # noqa: E731
    before = proc_status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Reset VmHWM to the current resident set.
    fn()
    after = proc_status_kib("VmHWM")
    print(json.dumps({"peak_mib": (after - before) / 1024.0}))


def proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s in /proc/self/status" % field)


def measure_memory(name, labels, threads=1):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name,
           "--labels", str(labels), "--child-threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main(args):
    if args.child:
        child_memory(args)
        return 0
    scores, rgb = make_inputs(args.labels)
    reference = have_pydensecrf()
    if not reference:
        print("pydensecrf not installed (pip install pydensecrf2): timing "
              "the layer only", file=sys.stderr)
    load_before = os.getloadavg()
    results = {"image": [HEIGHT, WIDTH], "labels": args.labels,
               "params": PARAMS, "repeats": args.repeats,
               "machine": {"cpus": os.cpu_count(),
                           "processor": platform.processor(),
                           "load_before": load_before},
               "runs": []}
    total = len(args.iters) * args.repeats
    done = 0
    start_all = time.perf_counter()
    for iters in args.iters:
        layers = {}
        net_build = {}
        for threads in args.threads:
            t, layers[threads] = timed(lambda: make_layer(iters, threads))
            t_first, _ = timed(lambda: layers[threads](scores, rgb, "rgb"))
            net_build[threads] = t_first  # net construction + first run
        times = {"pydensecrf": []} if reference else {}
        times.update({"layer_%dt" % t: [] for t in args.threads})
        cpu = {k: [] for k in times}
        q_ref = q = None
        for _ in range(args.repeats):
            if reference:
                t, q_ref = timed(lambda: run_pydensecrf(scores, rgb, iters),
                                 cpu["pydensecrf"])
                times["pydensecrf"].append(t)
            for threads in args.threads:
                t, q = timed(lambda: layers[threads](scores, rgb, "rgb"),
                             cpu["layer_%dt" % threads])
                times["layer_%dt" % threads].append(t)
            done += 1
            elapsed = time.perf_counter() - start_all
            print("[%d/%d] iters %d, %.1f s elapsed, ETA %.0f s"
                  % (done, total, iters, elapsed,
                     elapsed / done * (total - done)), file=sys.stderr)
        run = {"iters": iters,
               "first_call_s": net_build,
               "best_ms": {k: 1e3 * min(v) for k, v in times.items()},
               "median_ms": {k: 1e3 * statistics.median(v)
                             for k, v in times.items()},
               "best_cpu_ms": {k: 1e3 * min(v) for k, v in cpu.items()}}
        if reference:
            run["label_agreement"] = float(
                (q.argmax(0) == q_ref.argmax(0)).mean())
            run["max_abs_q_diff"] = float(np.abs(q - q_ref).max())
        results["runs"].append(run)
    memory = {"layer_%dt" % t: measure_memory("layer", args.labels, t)
              for t in args.threads}
    if reference:
        memory["pydensecrf"] = measure_memory("pydensecrf", args.labels)
    results["peak_memory_mib_above_inputs_5_iters"] = memory
    results["machine"]["load_after"] = os.getloadavg()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)),
                    exist_ok=True)
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=2)
        os.replace(tmp, args.json)
    print(markdown(results, args.threads, reference))
    return 0


def markdown(results, threads, reference):
    cols = (["pydensecrf"] if reference else []) + [
        "layer_%dt" % t for t in threads]
    head = "| iterations | " + " | ".join(
        "%s best / median (ms)" % c for c in cols)
    if reference:
        head += " | " + " | ".join(
            "speed-up %s" % c for c in cols[1:]) + " | label agreement"
    head += " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for run in results["runs"]:
        cells = ["%.0f / %.0f" % (run["best_ms"][c], run["median_ms"][c])
                 for c in cols]
        if reference:
            ref = run["best_ms"]["pydensecrf"]
            cells += ["%.2fx" % (ref / run["best_ms"][c]) for c in cols[1:]]
            cells.append("%.4f" % run["label_agreement"])
        lines.append("| %d | %s |" % (run["iters"], " | ".join(cells)))
    lines.append("")
    lines.append("Best CPU time of the process (ms; two-thread runs add "
                 "both threads):")
    lines.append("")
    lines.append("| iterations | " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * (len(cols) + 1))
    for run in results["runs"]:
        lines.append("| %d | %s |" % (run["iters"], " | ".join(
            "%.0f" % run["best_cpu_ms"][c] for c in cols)))
    mem = results["peak_memory_mib_above_inputs_5_iters"]
    lines.append("")
    lines.append("Peak memory above the input data (5 iterations): "
                 + ", ".join("%s %.0f MiB" % (k, v)
                             for k, v in sorted(mem.items())))
    lines.append("Load average before / after: %s / %s" % (
        " ".join("%.1f" % x for x in results["machine"]["load_before"]),
        " ".join("%.1f" % x for x in results["machine"]["load_after"])))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
