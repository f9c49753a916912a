"""The progress line: count, rate, ETA, drawn in place on a stream."""
import io

from hrenet.progress import Progress, format_seconds


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_format_seconds():
    assert format_seconds(0) == "0:00"
    assert format_seconds(75.4) == "1:15"
    assert format_seconds(3725) == "1:02:05"


def test_count_rate_eta():
    clock, stream = FakeClock(), io.StringIO()
    bar = Progress(total=100, label="build", stream=stream, interval=1.0,
                   clock=clock)
    for _ in range(20):
        clock.t += 0.1  # 10 items per second
        bar.update()
    line = bar.line()
    assert line.startswith("build  20/100 ( 20.0%)  10.0 it/s")
    assert "elapsed 0:02" in line and line.endswith("ETA 0:08")
    bar.close()
    out = stream.getvalue()
    assert out.startswith("\rbuild") and out.endswith("\n")


def test_disabled_writes_nothing():
    stream = io.StringIO()
    bar = Progress(total=3, stream=stream, enabled=False)
    bar.update(3)
    bar.close()
    assert stream.getvalue() == ""
