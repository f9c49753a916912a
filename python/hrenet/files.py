"""Atomic output files: write to a temporary name beside the target, then
rename, so that a crash or an interrupt never leaves a half-written file at a
final path.

For whole output folders: :func:`check_output_dir` (and
:func:`check_output_file`) say before any work starts whether ``--out`` can
be written, naming the flag and the fix; :class:`StagedOutput` writes a
folder's files into a temporary folder beside it and moves them in only
when everything succeeded. :func:`os_error_message` turns an OSError into
one sentence with the path, the reason and the fix."""
import contextlib
import errno
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
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


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


# ---------------------------------------------------------------------------
# Output folders: checked first, written in full or not at all

_REASONS = {
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.ENOTDIR: ("a file stands where a folder is needed",
                    "check the path; a part of it is a file"),
    errno.EISDIR: ("is a folder, not a file", "give a file path"),
    errno.EEXIST: ("already exists", "remove it or choose another path"),
    errno.EACCES: ("permission denied",
                   "choose a place you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted",
                  "choose a place you can write to, or fix its permissions"),
    errno.EROFS: ("read-only file system", "choose a writable place"),
    errno.ENOSPC: ("no space left on the device",
                   "free some space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write "
                   "elsewhere"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
}


def os_error_message(error):
    """One sentence for an OSError: the path, what is wrong and the fix
    (instead of Python's ``[Errno 20] Not a directory: 'x'``)."""
    if error.errno is None:  # raised with a message of its own
        return str(error)
    reason, fix = _REASONS.get(error.errno, (None, "check the path"))
    reason = reason or (error.strerror or str(error) or
                        type(error).__name__).lower()
    path = error.filename
    if path is not None and error.filename2 is not None:
        path = f"{path} -> {error.filename2}"
    return f"{path}: {reason}; {fix}" if path is not None else \
        f"{reason}; {fix}"


def _output_error(flag, path, problem):
    from hrenet.inference import ToolError
    what = f"{flag} {path}" if flag else str(path)
    return ToolError(f"{what}: {problem}")


def check_output_dir(path, flag="--out"):
    """Check, without creating anything, that ``path`` is (or can become) a
    folder this process can write into; ToolError naming ``flag`` and the
    fix otherwise. Returns the absolute path."""
    if not path:
        raise _output_error(flag, repr(path), "give a folder path")
    target = os.path.abspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise _output_error(flag, path, "a file of that name exists; give "
                            "a folder path (or move the file away)")
    _check_parents(target, flag, path)
    return target


def check_output_file(path, flag="--out"):
    """Like :func:`check_output_dir` for a file to be written."""
    if not path:
        raise _output_error(flag, repr(path), "give a file path")
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise _output_error(flag, path, "is a folder; give a file path")
    _check_parents(os.path.dirname(target), flag, path)
    return target


def _check_parents(folder, flag, path):
    """The nearest existing folder at or above ``folder`` is a folder that
    this process can write into."""
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise _output_error(flag, path, f"{existing} is a file, not a "
                            "folder; give a path under a folder")
    _probe_writable(existing, flag, path)


def _probe_writable(folder, flag, path):
    """Create and remove a scratch folder in ``folder``: the only reliable
    test (access() says yes to root on read-only or virtual file systems)."""
    import tempfile
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=folder))
    except OSError as e:
        reason = _REASONS.get(e.errno, ((e.strerror or "").lower(),))[0]
        raise _output_error(flag, path, f"cannot create files in {folder} "
                            f"({reason}); give a folder you can "
                            "write to") from e


class StagedOutput(object):
    """Output folders written in full or not at all.

    ``folder(path)`` returns a new temporary folder, ``.NAME.tmp-PID``
    beside ``path`` (or inside the temporary folder of an already staged
    folder that contains ``path``: stage the outer one first), to write
    ``path``'s files into. ``commit()`` moves them into their targets
    (created if needed; files of the same name are replaced; names in
    ``last`` move last, so a summary JSON appears only beside complete
    results), most recently staged folder first. ``abort()`` removes the
    temporary folders and the parent folders this object created. As a
    context manager it commits on success and aborts on any exception,
    Ctrl-C included.
    """

    def __init__(self, last=()):
        self.last = set(last)
        self._staged = []  # (target, temporary folder)
        self._made = []  # parent folders created, outermost first

    def folder(self, path):
        target = os.path.abspath(path)
        for outer, tmp in self._staged:
            if target == outer:
                return tmp
            if target.startswith(outer + os.sep):
                inner = os.path.join(tmp, os.path.relpath(target, outer))
                os.makedirs(inner, exist_ok=True)
                return inner
        parent = os.path.dirname(target)
        missing = []
        while not os.path.exists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for folder in reversed(missing):
            os.mkdir(folder)
            self._made.append(folder)
        tmp = os.path.join(os.path.dirname(target),
                           f".{os.path.basename(target)}.tmp-{os.getpid()}")
        if os.path.exists(tmp):
            import shutil
            shutil.rmtree(tmp)
        os.mkdir(tmp)
        self._staged.append((target, tmp))
        return tmp

    def _merge(self, src, dst):
        names = sorted(os.listdir(src), key=lambda n: (n in self.last, n))
        for name in names:
            a, b = os.path.join(src, name), os.path.join(dst, name)
            if os.path.isdir(a) and os.path.isdir(b):
                self._merge(a, b)
            else:
                os.replace(a, b)

    def commit(self):
        import shutil
        for target, tmp in reversed(self._staged):
            if os.path.isdir(target):
                self._merge(tmp, target)
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                os.rename(tmp, target)
        self._staged, self._made = [], []

    def abort(self):
        import shutil
        for _, tmp in self._staged:
            shutil.rmtree(tmp, ignore_errors=True)
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        self._staged, self._made = [], []

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self.commit()
        else:
            self.abort()
        return False
