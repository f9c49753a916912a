"""tools/build_lmdb.py: round trips, bad inputs, --skip-bad, atomic output."""
import json
import os

import numpy as np
import pytest

from hrenet import datasets as ds
from hrenet import fixtures, lmdb_io

from _tools import TOOLS, load_tool  # noqa: E402


@pytest.fixture(scope="module")
def tool():
    return load_tool("build_lmdb")


def run(tool, *argv):
    return tool.main(tool.parse_args([str(a) for a in argv] + ["--quiet"]))


def leftovers(out):
    parent, base = os.path.split(str(out))
    return [n for n in os.listdir(parent) if n.startswith(base)]


def read_back(out):
    return list(lmdb_io.read_dataset(str(out)))


def test_voc_round_trip(tool, tmp_path):
    root = tmp_path / "VOC2012"
    expected = fixtures.make_voc(root, {"train": ["b", "a", "c"]})
    out = tmp_path / "lmdb"
    assert run(tool, "--format", "voc", "--root", root, "--out", out) == 0
    items = read_back(out)
    assert [k for k, _, _ in items] == ["00000000_b", "00000001_a",
                                        "00000002_c"]
    import cv2
    for key, image, label in items:
        name = key.split("_", 1)[1]
        np.testing.assert_array_equal(label, expected[name])  # lossless
        # the image bytes are stored as given: same decode as the file
        ref = cv2.imread(str(root / "JPEGImages" / (name + ".jpg")))
        np.testing.assert_array_equal(image, ref)
    meta = lmdb_io.read_meta(str(out))
    assert meta["count"] == 3 and meta["num_classes"] == 21
    assert meta["classes"] == list(ds.VOC_CLASSES)
    assert meta["sizes"]["most_common"] == [[12, 16, 3]]
    hist = np.bincount(np.concatenate([v.ravel() for v in expected.values()]),
                       minlength=256)
    assert meta["class_pixels"] == hist[:21].tolist()
    assert meta["ignore_pixels"] == int(hist[255])
    assert leftovers(out) == ["lmdb"]


def test_datum_fields(tool, tmp_path):
    fixtures.make_folder(tmp_path / "f", ["a"], size=(7, 9))
    out = tmp_path / "lmdb"
    assert run(tool, "--format", "folder", "--root", tmp_path / "f",
               "--num-classes", 5, "--out", out) == 0
    import lmdb
    pb2 = lmdb_io.caffe_pb2()
    for db, channels in (("image_lmdb", 3), ("label_lmdb", 1)):
        env = lmdb.open(str(out / db), readonly=True, lock=False)
        with env.begin() as txn:
            (key, value), = list(txn.cursor())
        env.close()
        d = pb2.Datum()
        d.ParseFromString(value)
        assert key == b"00000000_a"
        assert (d.channels, d.height, d.width, d.encoded) == \
            (channels, 7, 9, True)
        assert d.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_shuffle_is_seeded(tool, tmp_path):
    names = [f"n{i}" for i in range(12)]
    fixtures.make_folder(tmp_path / "f", names)
    orders = []
    for i, seed in enumerate((3, 3, 4)):
        out = tmp_path / f"lmdb{i}"
        assert run(tool, "--format", "folder", "--root", tmp_path / "f",
                   "--num-classes", 5, "--shuffle", "--seed", seed,
                   "--out", out) == 0
        orders.append([k.split("_", 1)[1] for k, _, _ in read_back(out)])
    assert orders[0] == orders[1] != orders[2]
    assert sorted(orders[0]) == sorted(names) and orders[0] != sorted(names)


def test_all_formats_build(tool, tmp_path):
    fixtures.make_stanford_bg(tmp_path / "sbg", ["0000047", "0000051"])
    fixtures.make_sbd(tmp_path / "sbd", ["s1", "t1"], ["v1"])
    fixtures.make_voc(tmp_path / "voc", {"train": ["t1", "t2"],
                                         "val": ["v1"]})
    image_dir, ann, expected = fixtures.make_coco(tmp_path / "coco")
    cases = [
        (["--format", "stanford-bg", "--root", tmp_path / "sbg"], 2),
        (["--format", "sbd", "--root", tmp_path / "sbd", "--split", "aug",
          "--voc-root", tmp_path / "voc"], 3),
        (["--format", "coco", "--root", image_dir, "--annotations", ann], 1),
    ]
    for i, (args, count) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert run(tool, *args, "--out", out) == 0
        assert lmdb_io.read_meta(str(out))["count"] == count
    (key, _, label), = read_back(tmp_path / "out2")
    assert key == "00000000_000000000001"
    np.testing.assert_array_equal(label, expected["000000000001"])
    meta = lmdb_io.read_meta(str(tmp_path / "out2"))
    assert meta["filtered"] == 1 and meta["min_foreground"] == 900
    names = [k.split("_", 1)[1] for k, _, _ in read_back(tmp_path / "out1")]
    assert names == ["s1", "t1", "t2"]  # v1 (VOC val) never in training


def test_list_option(tool, tmp_path):
    fixtures.make_stanford_bg(tmp_path / "sbg", ["0000047", "0000051",
                                                 "0000059"])
    lst = tmp_path / "fold0_train.txt"
    lst.write_text("0000059\n0000047\n")
    out = tmp_path / "out"
    assert run(tool, "--format", "stanford-bg", "--root", tmp_path / "sbg",
               "--list", lst, "--out", out) == 0
    assert [k for k, _, _ in read_back(out)] == ["00000000_0000059",
                                                 "00000001_0000047"]


# --- bad inputs: one message naming the file, the problem and --skip-bad ----

def corrupt_jpeg(root):
    path = root / "JPEGImages" / "b.jpg"
    data = bytearray(path.read_bytes())
    data[20:200] = b"\x00" * 180
    path.write_bytes(bytes(data))
    return path, "cannot decode image: corrupt or truncated"


def truncated_png(root):
    path = root / "SegmentationClass" / "b.png"
    path.write_bytes(path.read_bytes()[:-30])
    return path, "cannot read label PNG"


def size_mismatch(root):
    path = root / "SegmentationClass" / "b.png"
    fixtures.write_index_png(str(path), np.zeros((11, 16), np.uint8))
    return path, "size mismatch: label is 11x16 (HxW) but image"


def label_seven(root):
    path = root / "SegmentationClass" / "b.png"
    label = np.zeros((12, 16), np.uint8)
    label[5, 5] = 7
    fixtures.write_index_png(str(path), label)
    return path, "label value 7 outside [0, 5) and not 255"


def missing_label(root):
    path = root / "SegmentationClass" / "b.png"
    path.unlink()
    return path, "label file is missing"


@pytest.mark.parametrize("damage", [corrupt_jpeg, truncated_png,
                                    size_mismatch, label_seven,
                                    missing_label])
def test_bad_pair_stops_build_then_skip_bad(tool, tmp_path, capsys, damage):
    root = tmp_path / "voc"
    fixtures.make_voc(root, {"train": ["a", "b", "c"]}, num_classes=5)
    (root / "classes.txt").write_text("bg\nc1\nc2\nc3\nc4\n")
    path, problem = damage(root)
    out = tmp_path / "lmdb"
    args = ["--format", "voc", "--root", root, "--classes",
            root / "classes.txt", "--out", out]
    assert run(tool, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {problem}")
    assert "--skip-bad" in err
    assert err.count("\n") == 1  # one message
    assert leftovers(out) == []  # nothing at the final path, no temp dir
    assert run(tool, *args, "--skip-bad") == 0
    meta = lmdb_io.read_meta(str(out))
    assert meta["count"] == 2
    assert [s["file"] for s in meta["skipped"]] == [str(path)]
    assert meta["skipped"][0]["problem"].startswith(problem)
    assert [k for k, _, _ in read_back(out)] == ["00000000_a", "00000001_c"]


def test_regions_wrong_row_length_message(tool, tmp_path, capsys):
    root = tmp_path / "sbg"
    fixtures.make_stanford_bg(root, ["0000047"], size=(4, 5))
    path = root / "labels" / "0000047.regions.txt"
    lines = path.read_text().splitlines()
    lines[1] += " 3"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "lmdb"
    assert run(tool, "--format", "stanford-bg", "--root", root,
               "--out", out) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: line 2 has 6 values but line 1 "
                          "has 5 (wrong row length). ")
    assert "--skip-bad" in err
    assert leftovers(out) == []
    # all pairs bad: even --skip-bad has nothing to write
    assert run(tool, "--format", "stanford-bg", "--root", root,
               "--out", out, "--skip-bad") == 1
    assert "no usable pairs" in capsys.readouterr().err
    assert leftovers(out) == []


def test_empty_split_list_message(tool, tmp_path, capsys):
    root = tmp_path / "voc"
    fixtures.make_voc(root, {"train": ["a"]})
    lst = root / "ImageSets" / "Segmentation" / "val.txt"
    lst.write_text("")
    out = tmp_path / "lmdb"
    assert run(tool, "--format", "voc", "--root", root, "--split", "val",
               "--out", out) == 1
    assert capsys.readouterr().err == f"error: {lst}: split list is empty\n"
    assert leftovers(out) == []


def test_refuses_existing_output_unless_overwrite(tool, tmp_path, capsys):
    root = tmp_path / "f"
    fixtures.make_folder(root, ["a", "b"])
    out = tmp_path / "lmdb"
    out.mkdir()
    (out / "precious").write_text("x")
    args = ["--format", "folder", "--root", root, "--num-classes", 5,
            "--out", out]
    assert run(tool, *args) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "precious").exists()
    assert run(tool, *args, "--overwrite") == 0
    assert not (out / "precious").exists()
    assert lmdb_io.read_meta(str(out))["count"] == 2
    assert leftovers(out) == ["lmdb"]


def test_interrupt_leaves_nothing(tool, tmp_path, monkeypatch):
    root = tmp_path / "f"
    fixtures.make_folder(root, ["a", "b", "c", "d"])
    calls = []
    real = lmdb_io.load_pair

    def flaky(sample, num_classes):
        calls.append(sample.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(sample, num_classes)
    monkeypatch.setattr(lmdb_io, "load_pair", flaky)
    out = tmp_path / "lmdb"
    assert run(tool, "--format", "folder", "--root", root, "--num-classes",
               5, "--out", out) == 130
    assert leftovers(out) == []


def test_sigterm_leaves_nothing(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    root = tmp_path / "f"
    fixtures.make_folder(root, ["a"], size=(256, 256))
    for i in range(300):  # many pairs, cheaply: hard links
        os.link(root / "images" / "a.png", root / "images" / f"b{i}.png")
        os.link(root / "labels" / "a.png", root / "labels" / f"b{i}.png")
    out = tmp_path / "lmdb"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(TOOLS, "build_lmdb.py"), "--format",
         "folder", "--root", str(root), "--num-classes", "5", "--out",
         str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until the temp dir exists
        if any(".tmp-" in n for n in os.listdir(tmp_path)):
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    if proc.returncode == 0:
        pytest.skip("the build finished before SIGTERM arrived")
    assert proc.returncode == 128 + signal.SIGTERM
    assert leftovers(out) == []


def test_folder_needs_num_classes(tool, tmp_path, capsys):
    fixtures.make_folder(tmp_path / "f", ["a"])
    assert run(tool, "--format", "folder", "--root", tmp_path / "f",
               "--out", tmp_path / "o") == 1
    assert "--num-classes" in capsys.readouterr().err


def test_meta_json_is_valid(tool, tmp_path):
    fixtures.make_folder(tmp_path / "f", ["a"], size=(5, 6))
    out = tmp_path / "o"
    assert run(tool, "--format", "folder", "--root", tmp_path / "f",
               "--num-classes", 5, "--out", out) == 0
    with open(out / "meta.json") as f:
        meta = json.load(f)
    assert meta["format"] == "folder" and meta["count"] == 1
    assert meta["key_format"] == "%08d_<name>"
    assert sum(meta["class_pixels"]) + meta["ignore_pixels"] == 30
