"""Write and read the segmentation LMDB pair that the SegData layer reads.

Layout of a dataset directory ``OUT`` (what ``tools/build_lmdb.py --out``
writes and ``seg_data_param { source: OUT }`` reads):

``OUT/image_lmdb``  key ``%08d_<name>`` -> serialized ``caffe.Datum``: the
                    image file's JPEG/PNG bytes as they were (``encoded``
                    true; ``channels`` 3, ``height``, ``width`` of the decoded
                    image).
``OUT/label_lmdb``  the same keys -> ``Datum`` holding a lossless PNG of the
                    single-channel uint8 class-index map (255 = ignore;
                    ``encoded`` true, ``channels`` 1).
``OUT/meta.json``   format, num_classes, class names, count, image-size
                    summary, per-class pixel histogram, skipped files.

The ``%08d`` prefix fixes the order (LMDB sorts keys), so a shuffled build is
read back in its shuffled order. :func:`build_dataset` is atomic: it writes to
``OUT.tmp-<pid>`` beside ``OUT`` and renames it to ``OUT`` when complete; on an
error or an interrupt the temporary directory is removed.
"""
import json
import os
import shutil
from collections import Counter

import numpy as np

from hrenet.datasets import IGNORE_LABEL, DataError, image_format, load_pair

IMAGE_DB = "image_lmdb"
LABEL_DB = "label_lmdb"
META = "meta.json"
KEY_FORMAT = "%08d_<name>"
MAP_SIZE = 1 << 40  # address space only; the files grow as needed
COMMIT_EVERY = 128


def caffe_pb2():
    """The generated ``caffe_pb2`` module (from the built pycaffe)."""
    from caffe.proto import caffe_pb2 as pb2
    return pb2


def make_key(index, name):
    return f"{index:08d}_{name}".encode()


def image_datum(data, shape):
    """A Datum holding encoded image bytes; ``shape`` is the decoded HxWxC."""
    datum = caffe_pb2().Datum()
    datum.channels = 3
    datum.height, datum.width = int(shape[0]), int(shape[1])
    datum.data = bytes(data)
    datum.encoded = True
    return datum


def label_datum(label):
    """A Datum holding a lossless single-channel PNG of ``label`` (uint8)."""
    import cv2
    label = np.ascontiguousarray(label, dtype=np.uint8)
    ok, buf = cv2.imencode(".png", label)
    if not ok:
        raise RuntimeError("PNG encoding of a label failed")
    datum = caffe_pb2().Datum()
    datum.channels = 1
    datum.height, datum.width = label.shape
    datum.data = buf.tobytes()
    datum.encoded = True
    return datum


def decode_image_datum(datum):
    """BGR uint8 HxWx3 from an encoded image Datum."""
    import cv2
    return cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_COLOR)


def decode_label_datum(datum):
    """uint8 HxW from an encoded label Datum."""
    import cv2
    return cv2.imdecode(np.frombuffer(datum.data, np.uint8),
                        cv2.IMREAD_UNCHANGED)


def read_meta(path):
    """The dataset's meta.json; DataError if it is missing or unreadable."""
    meta = os.path.join(path, META)
    try:
        with open(meta) as f:
            value = json.load(f)
    except FileNotFoundError as e:
        raise DataError(path, "no meta.json: not a dataset written by "
                        "tools/build_lmdb.py; build it first") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(meta, "not valid JSON (cut short or edited?); "
                        "rebuild the dataset with tools/build_lmdb.py") from e
    if not isinstance(value, dict):
        raise DataError(meta, "not a meta.json of tools/build_lmdb.py; "
                        "rebuild the dataset")
    return value


REBUILD = "rebuild the dataset with tools/build_lmdb.py (or copy it again)"


def open_lmdb(path):
    """Open the LMDB folder ``path`` read-only, after checking that its
    ``data.mdb`` holds every page its header names.

    LMDB maps the file into memory: reading a page beyond the end of a
    truncated file (a copy or download cut short) kills the process with
    SIGBUS instead of raising. So the file's size is checked against the
    environment's last page first, and any failure to open is a
    :class:`DataError` naming the folder.
    """
    import lmdb
    data = os.path.join(path, "data.mdb")
    if not os.path.isdir(path):
        raise DataError(path, "LMDB folder does not exist; give a dataset "
                        "written by tools/build_lmdb.py")
    if not os.path.isfile(data):
        raise DataError(path, f"no data.mdb: not an LMDB folder; {REBUILD}")
    size = os.path.getsize(data)
    try:
        env = lmdb.open(path, readonly=True, lock=False, subdir=True)
    except lmdb.Error as e:
        raise DataError(data, f"not a readable LMDB file ({size} bytes; "
                        f"{str(e).split(': ')[-1]}); {REBUILD}") from e
    try:
        need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    except lmdb.Error as e:
        env.close()
        raise DataError(data, f"unreadable LMDB header ({e}); {REBUILD}") \
            from e
    if size < need:
        env.close()
        raise DataError(data, f"truncated: {size} bytes, but its header "
                        f"names {need} bytes of pages; {REBUILD}")
    return env


def check_dataset(path):
    """Check a dataset folder before any record is read: both LMDBs
    present, whole (:func:`open_lmdb`) and of equal length. Returns the
    number of records."""
    if not os.path.isdir(path):
        raise DataError(path, "dataset folder does not exist; build it with "
                        "tools/build_lmdb.py (relative paths are taken from "
                        "the current folder)")
    counts = []
    for name in (IMAGE_DB, LABEL_DB):
        if not os.path.isdir(os.path.join(path, name)):
            raise DataError(path, f"no {name}/ here: not a dataset written "
                            "by tools/build_lmdb.py; build it first")
        env = open_lmdb(os.path.join(path, name))
        try:
            counts.append(env.stat()["entries"])
        finally:
            env.close()
    if counts[0] != counts[1]:
        raise DataError(path, f"{IMAGE_DB} holds {counts[0]} records but "
                        f"{LABEL_DB} {counts[1]}; {REBUILD}")
    return counts[0]


def _key_text(key):
    return key.decode("utf-8", "replace")


def parse_datum(value, key, folder, channels):
    """The Datum of one record, checked: it parses, holds encoded JPEG/PNG
    bytes and the expected channel count. A short or garbled record is a
    DataError naming the key and the folder."""
    from google.protobuf.message import DecodeError
    datum = caffe_pb2().Datum()
    where = f"record {_key_text(key)!r}"
    try:
        datum.ParseFromString(value)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise DataError(folder, f"{where} is not a caffe Datum (short or "
                        f"garbled bytes); {REBUILD}") from e
    if not datum.encoded or image_format(datum.data) is None:
        raise DataError(folder, f"{where} holds no encoded JPEG/PNG (short "
                        f"or garbled record); {REBUILD}")
    if datum.channels != channels or datum.height < 1 or datum.width < 1:
        raise DataError(folder, f"{where} has shape {datum.channels}x"
                        f"{datum.height}x{datum.width} (CxHxW), expected "
                        f"{channels} channels; {REBUILD}")
    return datum


def read_dataset(path):
    """Yield ``(key, image BGR uint8, label uint8)`` in key order.

    The dataset is checked first (:func:`check_dataset`: no SIGBUS on a
    truncated file) and every record as it is read (:func:`parse_datum`,
    decodable, image and label of the datum's size); a bad one raises
    :class:`DataError` naming the key and the LMDB folder.
    """
    check_dataset(path)
    folders = [os.path.join(path, name) for name in (IMAGE_DB, LABEL_DB)]
    envs = [open_lmdb(folder) for folder in folders]
    try:
        with envs[0].begin() as ti, envs[1].begin() as tl:
            ci, cl = ti.cursor(), tl.cursor()
            for (ki, vi), (kl, vl) in zip(ci, cl):
                if ki != kl:
                    raise DataError(path, f"image key {_key_text(ki)!r} != "
                                    f"label key {_key_text(kl)!r}: the two "
                                    f"LMDBs are not aligned; {REBUILD}")
                di = parse_datum(vi, ki, folders[0], 3)
                dl = parse_datum(vl, kl, folders[1], 1)
                image = decode_image_datum(di)
                label = decode_label_datum(dl)
                for array, datum, folder in ((image, di, folders[0]),
                                             (label, dl, folders[1])):
                    if array is None or array.shape[:2] != (datum.height,
                                                            datum.width):
                        raise DataError(folder, f"record {_key_text(ki)!r}:"
                                        " the encoded bytes do not decode to "
                                        f"{datum.height}x{datum.width} "
                                        f"(short or garbled); {REBUILD}")
                if label.ndim != 2:
                    raise DataError(folders[1], f"record {_key_text(kl)!r}:"
                                    " the label is not single-channel; "
                                    + REBUILD)
                yield _key_text(ki), image, label
    finally:
        for env in envs:
            env.close()


def size_summary(sizes):
    """Summary of a list of (height, width) pairs."""
    if not sizes:
        return {}
    hs = [h for h, _ in sizes]
    ws = [w for _, w in sizes]
    common = Counter(sizes).most_common(5)
    return {"min_height": min(hs), "max_height": max(hs),
            "min_width": min(ws), "max_width": max(ws),
            "distinct": len(set(sizes)),
            "most_common": [[h, w, n] for (h, w), n in common]}


class BadSample(DataError):
    """A sample the build refused (``--skip-bad`` skips instead)."""


def _publish(tmp, out, meta):
    """Write ``meta`` into the finished ``tmp`` folder and rename it to
    ``out`` (an existing ``out`` is moved aside first, then removed)."""
    with open(os.path.join(tmp, META), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    if os.path.exists(out):
        old = os.path.join(os.path.dirname(out),
                           f"{os.path.basename(out)}.old-{os.getpid()}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


def _in_order(items, shuffle, seed):
    """The items as a list, in a seeded random order when shuffle is set."""
    items = list(items)
    if shuffle:
        order = np.random.RandomState(seed).permutation(len(items))
        items = [items[i] for i in order]
    return items


def _staging_folder(out):
    """A fresh, empty temporary folder beside ``out`` (renamed to it when
    a dataset is complete)."""
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f"{os.path.basename(out)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    return tmp


def build_dataset(samples, out, num_classes, class_names=None, fmt="",
                  shuffle=False, seed=0, skip_bad=False, overwrite=False,
                  min_foreground=None, progress=True, extra_meta=None):
    """Validate ``samples`` and write the LMDB pair plus meta.json to ``out``.

    A bad sample raises :class:`BadSample` (path + problem), unless
    ``skip_bad``: then it is left out and listed in ``meta['skipped']``.
    ``min_foreground``: keep only labels with more than that many pixels of
    classes 1..num_classes-1 (the COCO rule; others count as ``filtered``).
    Returns the meta dictionary. Raises FileExistsError if ``out`` exists
    and not ``overwrite``.
    """
    import lmdb
    caffe_pb2()  # import before the clock starts; fails early if missing
    out = os.path.abspath(out)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to "
                              "replace it")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for "
                         f"{num_classes} classes")
    samples = _in_order(samples, shuffle, seed)
    tmp = _staging_folder(out)
    envs = []
    try:
        envs = [lmdb.open(os.path.join(tmp, name), map_size=MAP_SIZE,
                          subdir=True, meminit=False)
                for name in (IMAGE_DB, LABEL_DB)]
        hist = np.zeros(256, np.int64)
        sizes, skipped, filtered = [], [], 0
        from tqdm import tqdm
        bar = tqdm(total=len(samples), desc="build_lmdb", unit="img",
                   disable=not progress, dynamic_ncols=True)
        txns = [env.begin(write=True) for env in envs]
        count = 0
        for sample in samples:
            bar.update()
            try:
                data, image, label = load_pair(sample, num_classes)
            except DataError as e:
                if not skip_bad:
                    raise BadSample(e.path, e.problem) from e
                skipped.append({"name": sample.name, "file": e.path,
                                "problem": e.problem})
                continue
            if min_foreground is not None:
                fg = int(((label > 0) & (label < num_classes)).sum())
                if fg <= min_foreground:
                    filtered += 1
                    continue
            key = make_key(count, sample.name)
            txns[0].put(key, image_datum(data, image.shape)
                        .SerializeToString())
            txns[1].put(key, label_datum(label).SerializeToString())
            hist += np.bincount(label.ravel(), minlength=256)
            sizes.append(tuple(int(v) for v in label.shape))
            count += 1
            if count % COMMIT_EVERY == 0:
                for t in txns:
                    t.commit()
                txns = [env.begin(write=True) for env in envs]
        for t in txns:
            t.commit()
        bar.close()
        for env in envs:
            env.close()
        envs = []
        if count == 0:
            raise DataError(out, f"no usable pairs among {len(samples)} "
                            f"samples ({len(skipped)} bad, {filtered} "
                            "filtered): nothing to write")
        meta = {
            "format": fmt,
            "num_classes": int(num_classes),
            "classes": list(class_names) if class_names else
            [str(i) for i in range(num_classes)],
            "count": count,
            "key_format": KEY_FORMAT,
            "image_lmdb": IMAGE_DB,
            "label_lmdb": LABEL_DB,
            "ignore_label": IGNORE_LABEL,
            "sizes": size_summary(sizes),
            "class_pixels": [int(v) for v in hist[:num_classes]],
            "ignore_pixels": int(hist[IGNORE_LABEL]),
            "shuffle": bool(shuffle),
            "seed": int(seed),
            "skipped": skipped,
            "filtered": filtered,
        }
        if min_foreground is not None:
            meta["min_foreground"] = int(min_foreground)
        meta.update(extra_meta or {})
        _publish(tmp, out, meta)
        return meta
    except BaseException:
        for env in envs:
            env.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def format_summary(meta):
    """A human-readable summary of a build (Markdown-ish text)."""
    lines = [f"{meta['count']} images, {meta['num_classes']} classes, "
             f"format {meta['format'] or '?'}"]
    s = meta.get("sizes") or {}
    if s:
        lines.append(f"sizes: height {s['min_height']}-{s['max_height']}, "
                     f"width {s['min_width']}-{s['max_width']}, "
                     f"{s['distinct']} distinct; most common "
                     + ", ".join(f"{h}x{w} ({n})"
                                 for h, w, n in s["most_common"]))
    total = sum(meta["class_pixels"]) + meta["ignore_pixels"]
    lines.append("class pixels:")
    for name, n in zip(meta["classes"], meta["class_pixels"]):
        lines.append(f"  {name:>16s} {n:12d}  {100.0 * n / total:6.2f}%")
    lines.append(f"  {'ignore (255)':>16s} {meta['ignore_pixels']:12d}  "
                 f"{100.0 * meta['ignore_pixels'] / total:6.2f}%")
    if meta.get("filtered"):
        lines.append(f"filtered (<= {meta.get('min_foreground')} class "
                     f"pixels): {meta['filtered']}")
    if meta["skipped"]:
        lines.append(f"skipped {len(meta['skipped'])} bad pairs:")
        lines += [f"  {s['file']}: {s['problem']}" for s in meta["skipped"]]
    return "\n".join(lines)


def _record_name(key, folder):
    """The ``<name>`` of a ``%08d_<name>`` key."""
    text = _key_text(key)
    head, sep, name = text.partition("_")
    if not (sep and head.isdigit() and name):
        raise DataError(folder, f"record key {text!r} is not "
                        f"{KEY_FORMAT}; {REBUILD}")
    return name


def merge_datasets(sources, out, shuffle=False, seed=0, overwrite=False):
    """Concatenate datasets written by :func:`build_dataset` into ``out``.

    The records are copied as they are (no image decoding; each is checked
    by :func:`parse_datum`), renumbered ``%08d_<name>`` in source order, or
    in a seeded random order with ``shuffle``. Every source must have the
    same class list, and each may be given once. Atomic like
    :func:`build_dataset`. Returns the new meta dictionary.
    """
    if not sources:
        raise ValueError("no source datasets to merge")
    seen = {}
    for src in sources:
        real = os.path.realpath(src)
        if real in seen:
            also = "" if seen[real] == src else f" (also as {seen[real]})"
            raise DataError(src, f"given twice{also}; list each dataset "
                            "once")
        seen[real] = src
    metas = []
    for src in sources:
        check_dataset(src)
        metas.append(read_meta(src))
        for field in ("classes", "num_classes", "class_pixels",
                      "ignore_pixels"):
            if field not in metas[-1]:
                raise DataError(os.path.join(src, META), f"has no "
                                f"{field!r}; {REBUILD}")
        if metas[-1]["classes"] != metas[0]["classes"]:
            raise DataError(src, f"its classes differ from {sources[0]}'s; "
                            "only datasets with one class list can merge")
    out = os.path.abspath(out)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to "
                              "replace it")
    entries = []  # (source index, key)
    for i, src in enumerate(sources):
        folder = os.path.join(src, IMAGE_DB)
        env = open_lmdb(folder)
        try:
            with env.begin() as txn:
                for k in txn.cursor().iternext(values=False):
                    _record_name(k, folder)
                    entries.append((i, k))
        finally:
            env.close()
    entries = _in_order(entries, shuffle, seed)
    import lmdb
    tmp = _staging_folder(out)
    readers = []
    try:
        for src in sources:
            readers.append([])
            for db in (IMAGE_DB, LABEL_DB):
                readers[-1].append(open_lmdb(os.path.join(src, db)))
        for d, db in enumerate((IMAGE_DB, LABEL_DB)):
            env = lmdb.open(os.path.join(tmp, db), map_size=MAP_SIZE,
                            subdir=True, meminit=False)
            txns = [r[d].begin() for r in readers]
            wtxn = env.begin(write=True)
            for n, (i, key) in enumerate(entries):
                folder = os.path.join(sources[i], db)
                value = txns[i].get(key)
                if value is None:
                    raise DataError(folder, f"record {_key_text(key)!r} of "
                                    f"{IMAGE_DB} is missing here; {REBUILD}")
                parse_datum(value, key, folder, 3 if d == 0 else 1)
                wtxn.put(make_key(n, _record_name(key, folder)), value)
                if (n + 1) % COMMIT_EVERY == 0:
                    wtxn.commit()
                    wtxn = env.begin(write=True)
            wtxn.commit()
            for t in txns:
                t.abort()
            env.close()
        meta = dict(metas[0])
        meta.update({
            "format": "merged",
            "count": len(entries),
            "class_pixels": [int(sum(m["class_pixels"][c] for m in metas))
                             for c in range(meta["num_classes"])],
            "ignore_pixels": int(sum(m["ignore_pixels"] for m in metas)),
            "shuffle": bool(shuffle), "seed": int(seed),
            "skipped": [s for m in metas for s in m.get("skipped", [])],
            "filtered": int(sum(m.get("filtered", 0) for m in metas)),
            "merged_from": [os.path.abspath(s) for s in sources],
        })
        meta.pop("sizes", None)
        _publish(tmp, out, meta)
        return meta
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        for pair in readers:
            for env in pair:
                env.close()
