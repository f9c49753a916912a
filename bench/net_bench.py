"""Whole-net CPU benchmark: FCN (a), H-ReNet (b) and (d), Caffe's two
CPU engines against PyTorch.

For each net (prototxt/<net>/deploy.prototxt at --height x --width, batch
1) it times the forward pass and a forward+backward pass (a random gradient
at the score, every parameter's gradient; the input's too, as Caffe's
force_backward computes it) of:

- ``caffe-CAFFE``: our build with every convolution, pooling and ReLU on
  ``engine: CAFFE`` (upstream's layers: im2col + GEMM convolutions);
- ``caffe-DNNL``: the same net with those layers on ``engine: DNNL``
  (oneDNN);
- ``torch``: a PyTorch re-implementation of the same architecture
  (nn.Conv2d, ceil-mode max pooling, eval-mode BatchNorm, bidirectional
  nn.LSTM sweeps for the ReNet layers, align-corners bilinear upsampling),
  with PyTorch's default CPU path (oneDNN convolutions).

Every (framework, net) runs in a worker process of its own with --threads
threads for everything (HRENET_THREADS, which libcaffe also gives OpenBLAS
and OpenMP; OMP_NUM_THREADS and torch.set_num_threads for PyTorch), in
--rounds rounds of all frameworks in turn (a shared VM's speed drifts over
minutes: interleaving gives each the same chances). Reported: each
framework's median over rounds of its per-round median, and the paired
ratio to PyTorch (the median over rounds of the ratio within a round) for
forward and forward+backward, plus H-ReNet (d) / FCN (a) forward time per
framework (the paper's own ratio).

  bench/net_bench.py                          # 3 nets, 2 threads, 3 rounds
  bench/net_bench.py --nets fcn/a --threads 0 --rounds 5 --json out.json

PyTorch must be importable (see bench/torch_cpu_stubs.py); without it each
round prints the torch worker's error and its cells and ratios show "–"
(or leave it out with --frameworks caffe-CAFFE caffe-DNNL). Weights are
random (fill_random); --threads 0: all usable CPUs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from hrenet.cli import add_size, add_timing, cli, int_range, parser

ROOT = os.path.normpath(os.path.join(os.path.dirname(
    os.path.abspath(__file__)), os.pardir))
NETS = ["fcn/a", "hrenet/b", "hrenet/d"]
FRAMEWORKS = ["caffe-CAFFE", "caffe-DNNL", "torch"]


def timed(fn, repeats, warmup):
    """Median wall time (ms) of fn over `repeats` runs after `warmup`."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


# --------------------------------------------------------------------------
# workers

def deploy_with_engine(net, engine, height, width, out):
    """The net's deploy prototxt with every convolution, pooling and ReLU
    on `engine` ("CAFFE" or "DNNL", the Engine name of each layer's
    parameter; None: as the file has it), input 1 x 3 x height x width and
    force_backward, written to `out`."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    p = caffe_pb2.NetParameter()
    with open(os.path.join(ROOT, "prototxt", net, "deploy.prototxt")) as f:
        text_format.Merge(f.read(), p)
    p.force_backward = True
    params = {"Convolution": ("convolution_param",
                              caffe_pb2.ConvolutionParameter),
              "Pooling": ("pooling_param", caffe_pb2.PoolingParameter),
              "ReLU": ("relu_param", caffe_pb2.ReLUParameter)}
    for layer in p.layer:
        if layer.type == "Input":
            del layer.input_param.shape[:]
            layer.input_param.shape.add().dim.extend([1, 3, height, width])
        if layer.type in params and engine is not None:
            field, message = params[layer.type]
            getattr(layer, field).engine = getattr(message, engine)
    with open(out, "w") as f:
        f.write(text_format.MessageToString(p))


def fill_random(net, seed, data_std=1.0):
    """Random weights that keep activations of order 1 (N(0, 1/fan_in)),
    valid BatchNorm statistics (variance in [0.5, 2], scale factor 1) and
    random input data: no NaN or vanishing values in what is timed."""
    import numpy as np
    rng = np.random.RandomState(seed)
    for name, blobs in net.params.items():
        if net.layer_dict[name].type == "BatchNorm":
            blobs[0].data[...] = rng.normal(0, 0.1, blobs[0].data.shape)
            blobs[1].data[...] = rng.uniform(0.5, 2, blobs[1].data.shape)
            blobs[2].data[...] = 1
            continue
        for b in blobs:
            fan_in = np.prod(b.data.shape[1:]) if b.data.ndim > 1 else 1
            b.data[...] = rng.normal(0, 1 / np.sqrt(fan_in), b.data.shape)
    net.blobs["data"].data[...] = rng.normal(0, data_std,
                                             net.blobs["data"].shape)
    return rng


def worker_caffe(net, engine, height, width, repeats, warmup):
    import numpy as np
    import caffe
    caffe.set_mode_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "deploy.prototxt")
        deploy_with_engine(net, engine, height, width, path)
        n = caffe.Net(path, caffe.TEST)
    rng = fill_random(n, 0)
    top = n.outputs[0]
    grad = rng.normal(0, 1, n.blobs[top].data.shape).astype(np.float32)

    def step():
        n.forward()
        n.blobs[top].diff[...] = grad
        n.backward()
    return {"fwd_ms": timed(n.forward, repeats, warmup),
            "fwdbwd_ms": timed(step, repeats, warmup)}


def torch_net(net, classes=21):
    """PyTorch module of the net's architecture (deploy, no CRF)."""
    import torch
    from torch import nn

    def conv(cin, cout, k=3, pad=1, dil=1):
        return [nn.Conv2d(cin, cout, k, padding=pad, dilation=dil),
                nn.ReLU(inplace=True)]
    layers = (conv(3, 64) + conv(64, 64)
              + [nn.MaxPool2d(2, 2, ceil_mode=True)] + conv(64, 128)
              + conv(128, 128) + [nn.MaxPool2d(2, 2, ceil_mode=True)]
              + conv(128, 256) + conv(256, 256) + conv(256, 256)
              + [nn.MaxPool2d(2, 2, ceil_mode=True)]
              + conv(256, 512) + conv(512, 512) + conv(512, 512))
    to_pool4 = nn.Sequential(*layers, nn.MaxPool2d(3, 1, 1, ceil_mode=True))
    to_pool5 = nn.Sequential(*conv(512, 512, pad=2, dil=2),
                             *conv(512, 512, pad=2, dil=2),
                             *conv(512, 512, pad=2, dil=2),
                             nn.MaxPool2d(3, 1, 1, ceil_mode=True))
    to_conv7 = nn.Sequential(*conv(512, 1024, pad=12, dil=12),
                             *conv(1024, 1024))
    hybrid = net.startswith("hrenet/")
    multi = net == "hrenet/d"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = to_pool4, to_pool5, to_conv7
            feats = 1024
            if multi:
                self.bn = nn.ModuleList(nn.BatchNorm2d(k)
                                        for k in (512, 512, 1024))
                feats = 2048
            if hybrid:
                self.v = nn.LSTM(feats, 120, bidirectional=True)
                self.h = nn.LSTM(240, 120, bidirectional=True)
                feats = 240
            self.score = nn.Conv2d(feats, classes, 1)

        def forward(self, x):
            p4 = self.a(x)
            p5 = self.b(p4)
            f = self.c(p5)
            if multi:
                f = torch.cat([bn(t) for bn, t in zip(self.bn, (p4, p5, f))],
                              1)
            if hybrid:
                n, c, h, w = f.shape
                t = f.permute(2, 0, 3, 1).reshape(h, n * w, c)  # columns
                t, _ = self.v(t)
                t = t.reshape(h, n, w, 240).permute(2, 1, 0, 3)  # rows
                t, _ = self.h(t.reshape(w, n * h, 240))
                f = t.reshape(w, n, h, 240).permute(1, 3, 2, 0)
            s = self.score(f)
            return nn.functional.interpolate(s, size=x.shape[2:],
                                             mode="bilinear",
                                             align_corners=True)
    return Net().eval()


def worker_torch(net, height, width, repeats, warmup, threads):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = torch_net(net)
    x = torch.randn(1, 3, height, width)

    def fwd():
        with torch.no_grad():
            model(x)
    xg = x.clone().requires_grad_(True)
    grad = torch.randn(1, 21, height, width)

    def step():
        model.zero_grad(set_to_none=True)
        xg.grad = None
        model(xg).backward(grad)
    return {"fwd_ms": timed(fwd, repeats, warmup),
            "fwdbwd_ms": timed(step, repeats, warmup),
            "torch": torch.__version__}


def run_worker(args, framework, net, threads):
    # Caffe: the one knob (libcaffe gives it to OpenBLAS and OpenMP too);
    # PyTorch: OpenMP's.
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if framework == "torch":
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env["HRENET_THREADS"] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework,
           net, "--height", str(args.height), "--width", str(args.width),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--threads", str(threads)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------

def parse_args(argv=None):
    p = parser(__doc__)
    p.add_argument("--nets", nargs="+", choices=NETS, default=NETS,
                   help="nets to time (default: all three)")
    add_size(p, 375, 500)
    add_timing(p, warmup=1, repeats=3)
    p.add_argument("--rounds", type=int_range(1, 100), default=3,
                   help="rounds of all frameworks (default: %(default)s)")
    p.add_argument("--threads", type=int_range(0, 1024), default=2,
                   help="threads for everything, 0: all usable CPUs "
                   "(default: %(default)s)")
    p.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS,
                   default=FRAMEWORKS, help="what to time (default: all)")
    p.add_argument("--json", default=None, help="write the records here")
    p.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "NET"),
                   help=argparse.SUPPRESS)
    return p.parse_args(argv)


def ratio_table(rows, nets, frameworks):
    """Markdown: per net, each framework's median time and paired ratio to
    torch, forward and forward+backward."""
    out = ["| net | pass | " + " | ".join(frameworks)
           + " | CAFFE / torch | DNNL / torch |",
           "|---|---|" + "---|" * (len(frameworks) + 2)]
    for net in nets:
        for key, name in (("fwd_ms", "forward"), ("fwdbwd_ms", "fwd+bwd")):
            cells = []
            for fw in frameworks:
                t = [r[fw][key] for r in rows[net] if key in r.get(fw, {})]
                cells.append(f"{statistics.median(t):.0f} ms" if t else "–")
            for fw in ("caffe-CAFFE", "caffe-DNNL"):
                pairs = [r[fw][key] / r["torch"][key] for r in rows[net]
                         if key in r.get(fw, {}) and key in r.get("torch", {})]
                cells.append(f"{statistics.median(pairs):.2f} "
                             f"({min(pairs):.2f}-{max(pairs):.2f})"
                             if pairs else "–")
            out.append(f"| {net} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(args):
    if args.worker:
        fw, net = args.worker
        if fw == "torch":
            rec = worker_torch(net, args.height, args.width, args.repeats,
                               args.warmup, args.threads)
        else:
            rec = worker_caffe(net, fw.split("-")[1], args.height,
                               args.width, args.repeats, args.warmup)
        print(json.dumps(rec))
        return 0
    threads = args.threads or len(os.sched_getaffinity(0))
    frameworks = list(args.frameworks)
    rows = {net: [] for net in args.nets}
    for rnd in range(args.rounds):
        for net in args.nets:
            row = {}
            order = frameworks[rnd % len(frameworks):] + \
                frameworks[:rnd % len(frameworks)]
            for fw in order:
                row[fw] = run_worker(args, fw, net, threads)
                if "error" in row[fw]:
                    print(f"{net} {fw}: {row[fw]['error']}", file=sys.stderr)
            rows[net].append(row)
            print(f"[round {rnd + 1}/{args.rounds}] {net}: " + ", ".join(
                f"{fw} {row[fw].get('fwd_ms', float('nan')):.0f}/"
                f"{row[fw].get('fwdbwd_ms', float('nan')):.0f} ms"
                for fw in frameworks), file=sys.stderr)
    print(f"{args.height}x{args.width}, batch 1, {threads} threads, "
          f"{args.rounds} rounds; median ms (paired ratio to torch: median "
          "(min-max) over rounds)\n")
    print(ratio_table(rows, args.nets, frameworks))
    if "fcn/a" in rows and "hrenet/d" in rows:
        print("\nH-ReNet (d) / FCN (a) forward time (the paper's ratio):")
        for fw in frameworks:
            a = [r[fw]["fwd_ms"] for r in rows["fcn/a"] if "fwd_ms" in r[fw]]
            d = [r[fw]["fwd_ms"] for r in rows["hrenet/d"]
                 if "fwd_ms" in r[fw]]
            if a and d:
                ratio = statistics.median(d) / statistics.median(a)
                print(f"  {fw}: {ratio:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": threads, "height": args.height,
                       "width": args.width, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet Caffe's log
    sys.exit(cli(main)(parse_args()))
