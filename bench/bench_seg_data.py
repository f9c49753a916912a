#!/usr/bin/env python3
"""Throughput of the SegData layer against plain decoding of the same data.

Writes a synthetic dataset (tools/make_synthetic.py) of --num images of
--height x --width, builds its LMDB (tools/build_lmdb.py), then times:
  * reference: Python decoding of every image and label of the LMDB
    (cv2.imdecode from the stored bytes, one thread): the floor for any
    loader that decodes JPEG/PNG;
  * the layer in TRAIN (random crop, mirror, batch --batch) and in TEST
    (whole images, batch 1), via pycaffe forward passes after a warm-up.
Prints a Markdown table and writes JSON (--json).
"""
import json
import os
import platform
import sys
import tempfile
import time

from hrenet.cli import add_count, add_size, parser

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def parse_args(argv=None):
    p = parser(__doc__)
    add_count(p, "--num", 60, "images")
    add_size(p, 375, 500)
    p.add_argument("--crop", type=int, default=320,
                   help="TRAIN crop (square, default: %(default)s)")
    p.add_argument("--batch", type=int, default=10,
                   help="TRAIN batch size (default: %(default)s)")
    p.add_argument("--json", default=None,
                   help="write the results here (default: %(default)s)")
    return p.parse_args(argv)


def time_net(caffe, path, phase, images_per_forward, total_images):
    net = caffe.Net(path, phase)
    net.forward()  # warm-up: the prefetch queue fills
    forwards = max(1, total_images // images_per_forward)
    start = time.perf_counter()
    for _ in range(forwards):
        net.forward()
    seconds = time.perf_counter() - start
    del net
    return forwards * images_per_forward / seconds


def main(args):
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe
    import cv2
    import numpy as np
    import subprocess
    from hrenet import lmdb_io
    caffe.set_mode_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        syn, out = os.path.join(tmp, "syn"), os.path.join(tmp, "lmdb")
        tools = os.path.join(ROOT, "tools")
        subprocess.run([sys.executable, os.path.join(
            tools, "make_synthetic.py"), "--out", syn, "--num",
            str(args.num), "--height", str(args.height), "--width",
            str(args.width), "--quiet"], check=True)
        subprocess.run([sys.executable, os.path.join(
            tools, "build_lmdb.py"), "--format", "voc", "--root", syn,
            "--split", "trainval", "--classes",
            os.path.join(syn, "classes.txt"), "--out", out, "--quiet"],
            check=True)

        import lmdb
        pb2 = lmdb_io.caffe_pb2()
        raw = []
        for name in (lmdb_io.IMAGE_DB, lmdb_io.LABEL_DB):
            env = lmdb.open(os.path.join(out, name), readonly=True,
                            lock=False)
            with env.begin() as txn:
                raw.append([v for _, v in txn.cursor()])
            env.close()
        start = time.perf_counter()
        for vi, vl in zip(*raw):
            di, dl = pb2.Datum(), pb2.Datum()
            di.ParseFromString(vi)
            dl.ParseFromString(vl)
            cv2.imdecode(np.frombuffer(di.data, np.uint8), cv2.IMREAD_COLOR)
            cv2.imdecode(np.frombuffer(dl.data, np.uint8),
                         cv2.IMREAD_UNCHANGED)
        ref = len(raw[0]) / (time.perf_counter() - start)

        def net(phase_text, batch, crop, mirror):
            path = os.path.join(tmp, f"{phase_text}.prototxt")
            with open(path, "w") as f:
                f.write(f"""layer {{ name: "data" type: "SegData"
  top: "data" top: "label"
  seg_data_param {{ source: "{out}" batch_size: {batch} crop_h: {crop}
    crop_w: {crop} mirror: {str(mirror).lower()} shuffle: true seed: 1
    mean_value: 104 mean_value: 117 mean_value: 123 }} }}
""")
            return path
        train = time_net(caffe, net("train", args.batch, args.crop, True),
                         caffe.TRAIN, args.batch, 3 * args.num)
        test = time_net(caffe, net("test", 1, 0, False), caffe.TEST, 1,
                        3 * args.num)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "images": args.num, "size": [args.height, args.width],
        "reference_decode_img_per_s": round(ref, 1),
        "train_crop": args.crop, "train_batch": args.batch,
        "train_img_per_s": round(train, 1),
        "test_whole_img_per_s": round(test, 1),
    }
    print(f"| what ({args.height}x{args.width} JPEG + PNG label) "
          "| images/s | vs reference |")
    print("|---|---:|---:|")
    print(f"| reference: Python cv2.imdecode of image + label | {ref:.1f} "
          "| 1.00 |")
    print(f"| SegData TRAIN, crop {args.crop}, mirror, batch {args.batch} "
          f"| {train:.1f} | {train / ref:.2f} |")
    print(f"| SegData TEST, whole image, batch 1 | {test:.1f} "
          f"| {test / ref:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
