"""The synthetic context dataset: determinism, labels, cue, real layouts."""

import numpy as np
import pytest

from hrenet import datasets as ds
from hrenet import synthetic

from _tools import load_tool  # noqa: E402


def neighbours(mask):
    """8-neighbourhood dilation minus the mask itself."""
    return synthetic._dilate(mask) & ~mask


def test_deterministic_and_seeded():
    a = synthetic.make_sample(3, 48, 64, 4, seed=5)
    b = synthetic.make_sample(3, 48, 64, 4, seed=5)
    c = synthetic.make_sample(3, 48, 64, 4, seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1])
    # image i does not depend on how many are generated
    many = list(synthetic.generate(5, 48, 64, 4, seed=5))
    np.testing.assert_array_equal(many[3][1], a[1])


@pytest.mark.parametrize("index", range(12))
def test_label_structure(index):
    h, w, k_max = 96, 128, 4
    name, image, label, k, side = synthetic.make_sample(index, h, w, k_max)
    assert image.shape == (h, w, 3) and image.dtype == np.uint8
    assert label.shape == (h, w) and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, k, 255}
    objects = label == k
    assert objects.sum() > 20
    # a 1-pixel 255 ring separates every object from the background
    ring = label == 255
    np.testing.assert_array_equal(ring, neighbours(objects))
    assert not (neighbours(objects) & (label == 0)).any()
    # the band: cue colour, labelled background, far from every object
    bh = synthetic.band_height(h)
    rows = slice(0, bh) if side == "top" else slice(h - bh, h)
    assert (label[rows] == 0).all()
    colour = synthetic.band_colours(k_max)[k - 1].astype(float)
    assert np.abs(image[rows].reshape(-1, 3).mean(0) - colour).max() < 4
    ys = np.nonzero(objects.any(axis=1))[0]
    gap = h // 8
    if side == "top":
        assert ys.min() >= bh + gap
    else:
        assert ys.max() < h - bh - gap


def test_band_colours_are_distinct():
    colours = synthetic.band_colours(6).astype(int)
    d = np.abs(colours[:, None] - colours[None]).sum(-1)
    assert (d + 1000 * np.eye(6) > 60).all()


def test_objects_look_the_same_for_every_class():
    # Local appearance carries no class information: the object pixels'
    # colour statistics do not depend on the class.
    stats = {}
    for s in synthetic.generate(60, 48, 64, 3, seed=1):
        _, image, label, k, _ = s
        stats.setdefault(k, []).append(image[label == k].astype(float))
    means = {k: np.concatenate(v).mean(0) for k, v in stats.items()}
    assert len(means) == 3
    for k in means:
        assert np.abs(means[k] - means[1]).max() < 6


def test_cli_voc_layout_read_by_voc_reader(tmp_path):
    tool = load_tool("make_synthetic")
    out = tmp_path / "syn"
    argv = ["--out", str(out), "--num", "10", "--height", "40", "--width",
            "48", "--classes", "3", "--seed", "2", "--quiet"]
    assert tool.main(tool.parse_args(argv)) == 0
    assert ds.read_class_names(str(out / "classes.txt")) == \
        ["background", "class_1", "class_2", "class_3"]
    train = ds.voc_samples(str(out), "train")
    val = ds.voc_samples(str(out), "val")
    assert len(train) == 8 and len(val) == 2
    assert [s.name for s in ds.voc_samples(str(out), "trainval")] == \
        sorted(s.name for s in train + val)
    truth = {s[0]: s for s in synthetic.generate(10, 40, 48, 3, seed=2)}
    for sample in train + val:
        data, image, label = ds.load_pair(sample, 4)
        np.testing.assert_array_equal(label, truth[sample.name][2])
        # JPEG is lossy, but close (BGR from OpenCV vs RGB generated)
        err = np.abs(image[..., ::-1].astype(int) - truth[sample.name][1])
        assert err.mean() < 6
    assert tool.main(tool.parse_args(argv)) == 1  # refuses to overwrite
    assert tool.main(tool.parse_args(argv + ["--overwrite"])) == 0


def test_cli_stanford_bg_layout(tmp_path):
    tool = load_tool("make_synthetic")
    out = tmp_path / "syn"
    assert tool.main(tool.parse_args(
        ["--out", str(out), "--format", "stanford-bg", "--num", "4",
         "--height", "32", "--width", "40", "--classes", "2", "--quiet"])) == 0
    samples = ds.stanford_bg_samples(str(out))
    assert len(samples) == 4
    raw = np.loadtxt(out / "labels" / "syn_000000.regions.txt", dtype=int)
    assert raw.shape == (32, 40) and (raw == -1).any()
    truth = synthetic.make_sample(0, 32, 40, 2)[2]
    np.testing.assert_array_equal(samples[0].load_label(), truth)
    ds.load_pair(samples[0], 3)  # valid for K + 1 classes


def test_rejects_too_small_images():
    with pytest.raises(ValueError, match="too small"):
        synthetic.make_sample(0, 16, 64)


def _distance_to(mask):
    from scipy import ndimage
    return ndimage.distance_transform_edt(~mask)


@pytest.mark.parametrize("cue", synthetic.CUES)
def test_every_cue_is_far_from_the_objects(cue):
    """For each cue of the family: the cue is background, shows the
    class's colour, and every object pixel is at least the gap (an eighth
    of the image across it) from it; image i is the same every time."""
    style = synthetic.Style(cue=cue, objects=(1, 4))
    h, w, classes = 80, 112, 5
    colours = synthetic.band_colours(classes).astype(float)
    wheres = set()
    for i in range(16):
        name, image, label, k, where, mask = \
            synthetic.make_sample_with_cue(i, h, w, classes, 3, style)
        wheres.add(where)
        objects = label == k
        assert objects.sum() > 10 and mask.sum() > 10
        assert (label[mask] == 0).all()
        mean = image[mask].reshape(-1, 3).astype(float).mean(0)
        assert np.abs(mean - colours[k - 1]).max() < 6
        assert _distance_to(mask)[objects].min() >= min(h, w) // 8
        again = synthetic.make_sample(i, h, w, classes, 3, style)
        np.testing.assert_array_equal(again[1], image)
    expected = {"band": {"top", "bottom"},
                "side": {"top", "bottom", "left", "right"},
                "ring": {"ring"}}.get(cue)
    if expected:
        assert wheres == expected
    else:
        assert len(wheres) >= 3 and all(x.startswith(cue) for x in wheres)


def test_style_knobs():
    few = synthetic.Style(objects=(1, 1), stripe=5, noise=2.0)
    for i in range(6):
        _, image, label, k, _, cue = synthetic.make_sample_with_cue(
            i, 64, 80, 3, 0, few)
        from scipy import ndimage
        _, count = ndimage.label(label == k)
        assert count == 1
        background = image[(label == 0) & ~cue].astype(float)
        assert background.std(0).max() < 6  # noise 2 (+ 4 of colour)
    with pytest.raises(ValueError, match="cue"):
        synthetic.Style(cue="spiral")
    with pytest.raises(ValueError, match="objects"):
        synthetic.Style(objects=(3, 2))


def test_variants_generate_and_default_set_is_unchanged():
    assert len(synthetic.VARIANTS) >= 8
    sizes = {(v.height, v.width) for v in synthetic.VARIANTS.values()}
    assert (64, 80) in sizes and (128, 160) in sizes
    assert {v.classes for v in synthetic.VARIANTS.values()} >= {3, 8}
    assert {v.style.cue for v in synthetic.VARIANTS.values()} == \
        set(synthetic.CUES)
    for v in synthetic.VARIANTS.values():
        synthetic.make_sample(0, v.height, v.width, v.classes, 1, v.style)
    # the default style is the set the main job always had
    a = synthetic.make_sample(5, 64, 80, 4, 0)
    b = synthetic.make_sample(5, 64, 80, 4, 0, synthetic.DEFAULT_STYLE)
    np.testing.assert_array_equal(a[1], b[1])
    import hashlib
    assert hashlib.sha256(a[1].tobytes()).hexdigest()[:16] == \
        "e4cb358bd8e862c3"  # as generated before the family existed


def test_cli_variant_and_overrides(tmp_path):
    tool = load_tool("make_synthetic")
    args = tool.parse_args(["--out", str(tmp_path / "a"), "--variant",
                            "ring-96x128-k3", "--noise", "3", "--num", "2",
                            "--quiet"])
    assert (args.height, args.width, args.classes) == (96, 128, 3)
    assert args.style == synthetic.Style(cue="ring", noise=3.0)
    assert tool.main(args) == 0
    assert len(ds.voc_samples(str(tmp_path / "a"), "trainval")) == 2
    with pytest.raises(SystemExit):
        tool.parse_args(["--out", "x", "--objects", "3", "2"])
