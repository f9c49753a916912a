"""Readers of the five dataset formats, validation and split helpers."""
import numpy as np
import pytest

from hrenet import datasets as ds
from hrenet import fixtures


def labels_of(samples):
    return {s.name: s.load_label() for s in samples}


def test_voc_reader_reads_palette_labels(tmp_path):
    expected = fixtures.make_voc(tmp_path, {"train": ["a", "b"],
                                            "val": ["c"]})
    train = ds.voc_samples(str(tmp_path), "train")
    assert [s.name for s in train] == ["a", "b"]
    assert train[0].image_path.endswith("JPEGImages/a.jpg")
    got = labels_of(train)
    for name in ("a", "b"):
        np.testing.assert_array_equal(got[name], expected[name])
    assert [s.name for s in ds.voc_samples(str(tmp_path), "trainval")] == \
        ["a", "b", "c"]
    assert [s.name for s in ds.voc_samples(str(tmp_path), names=["c"])] == \
        ["c"]


def test_stanford_bg_reader_maps_negative_to_ignore(tmp_path):
    expected = fixtures.make_stanford_bg(tmp_path, ["0000047", "0000051"])
    samples = ds.stanford_bg_samples(str(tmp_path))
    assert [s.name for s in samples] == ["0000047", "0000051"]
    got = labels_of(samples)
    for name, label in expected.items():
        np.testing.assert_array_equal(got[name], label)
        assert (got[name] == 255).any()  # -1 in the file
    raw = np.loadtxt(tmp_path / "labels" / "0000047.regions.txt", dtype=int)
    assert (raw < 0).any() and set(np.unique(got["0000047"])) <= \
        set(range(8)) | {255}


def test_sbd_reader_reads_mat(tmp_path):
    expected = fixtures.make_sbd(tmp_path / "benchmark_RELEASE",
                                 ["2008_000002", "2008_000003"],
                                 ["2008_000005"])
    for root in (tmp_path / "benchmark_RELEASE",
                 tmp_path / "benchmark_RELEASE" / "dataset"):
        samples = ds.sbd_samples(str(root), "val")
        assert [s.name for s in samples] == ["2008_000005"]
        np.testing.assert_array_equal(samples[0].load_label(),
                                      expected["2008_000005"])


def test_sbd_aug_split_never_contains_voc_val():
    sbd_train = ["s1", "s2", "v1", "t1"]
    sbd_val = ["s3", "v2"]
    voc_train = ["t1", "t2"]
    voc_val = ["v1", "v2", "v3"]
    aug = ds.sbd_aug_names(sbd_train, sbd_val, voc_train, voc_val)
    assert aug == ["s1", "s2", "s3", "t1", "t2"]
    assert not set(aug) & set(voc_val)


def test_sbd_aug_samples_from_files(tmp_path):
    sbd = tmp_path / "benchmark_RELEASE"
    sbd_labels = fixtures.make_sbd(sbd, ["s1", "v1", "t1"], ["s2", "v2"])
    voc = tmp_path / "VOC2012"
    voc_labels = fixtures.make_voc(voc, {"train": ["t1", "t2"],
                                         "val": ["v1", "v2"]}, seed=3)
    samples = ds.sbd_samples(str(sbd), "aug", voc_root=str(voc))
    names = [s.name for s in samples]
    assert names == ["s1", "s2", "t1", "t2"]
    assert not {"v1", "v2"} & set(names)
    got = labels_of(samples)
    # VOC12 train images take their VOC annotation, the rest SBD's
    np.testing.assert_array_equal(got["t1"], voc_labels["t1"])
    np.testing.assert_array_equal(got["t2"], voc_labels["t2"])
    np.testing.assert_array_equal(got["s2"], sbd_labels["s2"])
    with pytest.raises(ValueError, match="--voc-root"):
        ds.sbd_samples(str(sbd), "aug")


def test_coco_reader_maps_voc_categories_and_overlaps(tmp_path):
    image_dir, ann, expected = fixtures.make_coco(tmp_path)
    samples = ds.coco_samples(image_dir, ann)
    assert [s.name for s in samples] == ["000000000001", "000000000002"]
    got = labels_of(samples)
    for name, label in expected.items():
        np.testing.assert_array_equal(got[name], label)
    one = got["000000000001"]
    assert one[10, 10] == ds.VOC_CLASSES.index("person")
    assert one[33, 40] == ds.VOC_CLASSES.index("dog")
    assert one[20, 22] == 255  # person and dog overlap
    assert one[1, 35] == 0  # toothbrush: not a VOC class
    assert one[33, 5] == ds.VOC_CLASSES.index("cat")  # crowd region
    assert ((one > 0) & (one < 21)).sum() > ds.COCO_MIN_VOC_PIXELS
    assert (got["000000000002"] > 0).sum() <= ds.COCO_MIN_VOC_PIXELS


def test_coco_mapping_is_the_issue_list():
    assert len(ds.COCO_TO_VOC) == 20
    assert sorted(ds.COCO_TO_VOC.values()) == list(range(1, 21))
    assert ds.COCO_TO_VOC[5] == ds.VOC_CLASSES.index("aeroplane")
    assert ds.COCO_TO_VOC[1] == ds.VOC_CLASSES.index("person")
    assert ds.COCO_TO_VOC[72] == ds.VOC_CLASSES.index("tvmonitor")
    assert ds.COCO_TO_VOC[62] == ds.VOC_CLASSES.index("chair")


def test_folder_reader(tmp_path):
    expected = fixtures.make_folder(tmp_path, ["x", "y"])
    samples = ds.folder_samples(str(tmp_path))
    assert [s.image_path.endswith(".png") for s in samples] == [True, True]
    got = labels_of(samples)
    for name, label in expected.items():
        np.testing.assert_array_equal(got[name], label)


# --- validation: every bad input of the issue -------------------------------

def test_corrupt_jpeg(tmp_path):
    fixtures.make_voc(tmp_path, {"train": ["a"]})
    path = tmp_path / "JPEGImages" / "a.jpg"
    data = bytearray(path.read_bytes())
    data[20:200] = b"\x00" * 180  # clobber the tables
    path.write_bytes(bytes(data))
    with pytest.raises(ds.DataError) as e:
        ds.load_pair(ds.voc_samples(str(tmp_path))[0], 21)
    assert e.value.path == str(path)
    assert "cannot decode image" in e.value.problem


def test_truncated_jpeg(tmp_path):
    fixtures.make_voc(tmp_path, {"train": ["a"]}, size=(64, 64))
    path = tmp_path / "JPEGImages" / "a.jpg"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(ds.DataError, match="corrupt or truncated") as e:
        ds.load_pair(ds.voc_samples(str(tmp_path))[0], 21)
    assert e.value.path == str(path)


def test_truncated_png_label(tmp_path):
    fixtures.make_voc(tmp_path, {"train": ["a"]})
    path = tmp_path / "SegmentationClass" / "a.png"
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 30])
    with pytest.raises(ds.DataError, match="cannot read label PNG") as e:
        ds.load_pair(ds.voc_samples(str(tmp_path))[0], 21)
    assert e.value.path == str(path)


def test_size_mismatch(tmp_path):
    fixtures.make_voc(tmp_path, {"train": ["a"]}, size=(12, 16))
    fixtures.write_index_png(str(tmp_path / "SegmentationClass" / "a.png"),
                             np.zeros((12, 15), np.uint8))
    with pytest.raises(ds.DataError) as e:
        ds.load_pair(ds.voc_samples(str(tmp_path))[0], 21)
    assert e.value.problem.startswith(
        "size mismatch: label is 12x15 (HxW) but image")
    assert "a.jpg is 12x16" in e.value.problem


def test_label_value_out_of_range(tmp_path):
    fixtures.make_folder(tmp_path, ["a"], num_classes=5)
    label = np.zeros((12, 16), np.uint8)
    label[3, 4] = 7
    label[0, 0] = 255  # ignore is fine
    path = tmp_path / "labels" / "a.png"
    fixtures.write_index_png(str(path), label, palette=False)
    with pytest.raises(ds.DataError) as e:
        ds.load_pair(ds.folder_samples(str(tmp_path))[0], 5)
    assert e.value.path == str(path)
    assert e.value.problem.startswith(
        "label value 7 outside [0, 5) and not 255 (1 pixels; 5 classes)")
    # the same label is valid for 8 classes
    ds.load_pair(ds.folder_samples(str(tmp_path))[0], 8)


def test_missing_label_file(tmp_path):
    fixtures.make_stanford_bg(tmp_path, ["0000047"])
    path = tmp_path / "labels" / "0000047.regions.txt"
    path.unlink()
    with pytest.raises(ds.DataError) as e:
        ds.load_pair(ds.stanford_bg_samples(str(tmp_path))[0], 8)
    assert (e.value.path, e.value.problem) == (str(path),
                                               "label file is missing")


def test_missing_image_file(tmp_path):
    fixtures.make_voc(tmp_path, {"train": ["a"]})
    (tmp_path / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(ds.DataError, match="image file is missing"):
        ds.load_pair(ds.voc_samples(str(tmp_path))[0], 21)


def test_empty_split_list(tmp_path):
    fixtures.make_voc(tmp_path, {"train": ["a"]})
    path = tmp_path / "ImageSets" / "Segmentation" / "val.txt"
    path.write_text("\n")
    with pytest.raises(ds.DataError) as e:
        ds.voc_samples(str(tmp_path), "val")
    assert (e.value.path, e.value.problem) == (str(path),
                                               "split list is empty")


def test_regions_txt_wrong_row_length(tmp_path):
    fixtures.make_stanford_bg(tmp_path, ["0000047"], size=(4, 5))
    path = tmp_path / "labels" / "0000047.regions.txt"
    lines = path.read_text().splitlines()
    lines[2] = " ".join(lines[2].split()[:4])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ds.DataError) as e:
        ds.load_pair(ds.stanford_bg_samples(str(tmp_path))[0], 8)
    assert e.value.path == str(path)
    assert e.value.problem == ("line 3 has 4 values but line 1 has 5 "
                               "(wrong row length)")


def test_regions_txt_not_integers(tmp_path):
    path = tmp_path / "x.regions.txt"
    path.write_text("0 1\n2 sky\n")
    with pytest.raises(ds.DataError, match="line 2 is not a row of integers"):
        ds.load_regions_txt(str(path))


def test_rgb_label_png_is_refused(tmp_path):
    from PIL import Image
    fixtures.make_voc(tmp_path, {"train": ["a"]})
    path = tmp_path / "SegmentationClass" / "a.png"
    Image.new("RGB", (16, 12)).save(path)
    with pytest.raises(ds.DataError, match="mode 'RGB'"):
        ds.load_pair(ds.voc_samples(str(tmp_path))[0], 21)


# --- folds, palette, class files ---------------------------------------------

def test_make_folds_even_disjoint_and_seeded():
    names = [f"{i:07d}" for i in range(715)]
    folds = ds.make_folds(names, k=5, seed=0)
    vals = [set(v) for _, v in folds]
    assert [len(v) for v in vals] == [143] * 5
    assert set().union(*vals) == set(names)
    for i, (train, val) in enumerate(folds):
        assert not set(train) & set(val)
        assert len(train) == 572
        for j in range(i):
            assert not vals[i] & vals[j]
    assert folds == ds.make_folds(list(reversed(names)), k=5, seed=0)
    assert folds != ds.make_folds(names, k=5, seed=1)


def test_write_folds(tmp_path):
    folds = ds.make_folds(["a", "b", "c", "d", "e", "f", "g"], k=5, seed=2)
    paths = ds.write_folds(str(tmp_path), folds)
    assert len(paths) == 10
    assert ds.read_list(str(tmp_path / "fold0_val.txt")) == folds[0][1]
    assert ds.read_list(str(tmp_path / "fold4_train.txt")) == folds[4][0]


def test_voc_palette_known_entries():
    pal = ds.voc_palette()
    assert pal.shape == (256, 3)
    assert tuple(pal[0]) == (0, 0, 0)
    assert tuple(pal[1]) == (128, 0, 0)
    assert tuple(pal[15]) == (192, 128, 128)  # person
    assert tuple(pal[255]) == (224, 224, 192)  # void


def test_committed_class_files_and_mapping():
    import json
    import os
    data = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                        "data")
    assert ds.read_class_names(os.path.join(data, "voc", "classes.txt")) == \
        list(ds.VOC_CLASSES)
    assert ds.read_class_names(
        os.path.join(data, "stanford_bg", "classes.txt")) == \
        list(ds.STANFORD_BG_CLASSES)
    with open(os.path.join(data, "coco", "voc_mapping.json")) as f:
        mapping = json.load(f)
    assert {int(k): v["voc_index"] for k, v in
            mapping["coco_to_voc"].items()} == ds.COCO_TO_VOC


def test_make_folds_cli(tmp_path, capsys):
    import importlib.util
    import os
    fixtures.make_stanford_bg(tmp_path / "iccv09Data",
                              [f"{i:07d}" for i in range(11)], size=(4, 5))
    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                        "tools", "make_folds.py")
    spec = importlib.util.spec_from_file_location("make_folds", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "folds"
    assert tool.main(tool.parse_args(["--root", str(tmp_path / "iccv09Data"),
                                      "--out", str(out)])) == 0
    vals = [ds.read_list(str(out / f"fold{i}_val.txt")) for i in range(5)]
    assert sorted(sum(vals, [])) == [f"{i:07d}" for i in range(11)]
    assert [len(v) for v in vals] == [3, 2, 2, 2, 2]
    assert "11 images in 5 folds" in capsys.readouterr().out
