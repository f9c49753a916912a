"""Atomic output files: write to a temporary name beside the target, then
rename, so that a crash or an interrupt never leaves a half-written file at a
final path."""
import contextlib
import json
import os


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` when the
    block completes, remove it when the block raises."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    # keep the extension last: writers (matplotlib, PIL) pick the format by it
    tmp = os.path.join(parent, f".{base}.tmp-{os.getpid()}{ext}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes(path, data):
    """``data`` to ``path`` through a temporary file in the same folder."""
    path = os.fspath(path)
    tmp = os.path.join(os.path.dirname(path) or ".",
                       f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def write_json(path, obj):
    """JSON with NaN written as null (see :func:`hrenet.metrics.json_safe`)."""
    from hrenet.metrics import json_safe
    write_text(path, json.dumps(json_safe(obj), indent=1) + "\n")


def read_json_lines(path):
    """Records of a JSON-lines file; a torn last line (crash while appending)
    is skipped."""
    records = []
    if not os.path.exists(path):
        return records
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def write_json_lines(path, records):
    from hrenet.metrics import json_safe
    write_text(path, "".join(json.dumps(json_safe(r)) + "\n"
                             for r in records))
