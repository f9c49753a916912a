"""Load the CLIs under tools/ (and bench/) as modules (they are scripts, not
a package)."""
import importlib.util
import os

TOOLS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                     os.pardir, "tools")


def load_tool(name, folder=TOOLS):
    """Import tools/<name>.py (or <folder>/<name>.py) and return the module
    (nothing runs at import)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(folder, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
