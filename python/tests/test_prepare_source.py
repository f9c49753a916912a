"""scripts/prepare_caffe_source.sh --overlay-only: our files are copied over
the source tree, and a file deleted from the overlay is deleted from the
tree too (else it would keep compiling)."""
import os
import subprocess

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                      os.pardir, "scripts", "prepare_caffe_source.sh")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def overlay(src, layers):
    r = subprocess.run(["bash", SCRIPT, "--overlay-only", str(src),
                        str(layers)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_overlay_copies_and_removes_deleted_files(tmp_path):
    src, layers = tmp_path / "src", tmp_path / "layers"
    write(str(src / "CMakeLists.txt"), "upstream\n")
    write(str(src / "src/caffe/layers/conv_layer.cpp"), "upstream conv\n")
    write(str(layers / "src/caffe/layers/a_layer.cpp"), "a\n")
    write(str(layers / "src/caffe/util/b.cpp"), "b\n")
    write(str(layers / "patches/0001-x.patch"), "not copied\n")
    out = overlay(src, layers)
    assert "2 file(s) added or deleted" in out
    assert (src / "src/caffe/layers/a_layer.cpp").read_text() == "a\n"
    assert (src / "src/caffe/util/b.cpp").read_text() == "b\n"
    assert not (src / "patches").exists()
    # Nothing changed: nothing to re-configure.
    assert overlay(src, layers) == ""
    # b deleted from the overlay, a changed: b leaves the tree, a is
    # updated, upstream's files stay.
    os.remove(str(layers / "src/caffe/util/b.cpp"))
    write(str(layers / "src/caffe/layers/a_layer.cpp"), "a2\n")
    out = overlay(src, layers)
    assert "1 file(s) added or deleted" in out
    assert not (src / "src/caffe/util/b.cpp").exists()
    assert (src / "src/caffe/layers/a_layer.cpp").read_text() == "a2\n"
    assert (src / "src/caffe/layers/conv_layer.cpp").read_text() == \
        "upstream conv\n"
    assert (src / "CMakeLists.txt").read_text() == "upstream\n"
