"""Run a tool's main() in-process and capture its exit status and stderr."""
from _tools import load_tool

_CACHE = {}


def run_tool(name, argv, capsys=None):
    """(exit status, stderr text) of tools/<name>.py with ``argv``."""
    tool = _CACHE.get(name)
    if tool is None:
        tool = _CACHE[name] = load_tool(name)
    if capsys is not None:
        capsys.readouterr()
    rc = tool.main(tool.parse_args([str(a) for a in argv]))
    err = capsys.readouterr().err if capsys is not None else ""
    return rc, err
