"""A small progress line on stderr: count, rate and ETA (no dependencies)."""
import sys
import time


def format_seconds(seconds):
    """Format a duration as H:MM:SS (or M:SS under an hour)."""
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """Progress line ``label  count/total  rate it/s  ETA``, redrawn in place.

    Redraws at most every ``interval`` seconds (and at :meth:`close`), writes
    to ``stream`` (default stderr) and stays silent when ``enabled`` is False.
    The rate is an exponential moving average of the recent rate, so that the
    ETA follows a build whose speed changes.
    """

    def __init__(self, total=None, label="", stream=None, interval=0.5,
                 enabled=True, clock=time.monotonic):
        self.total = total
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.interval = interval
        self.enabled = enabled
        self.clock = clock
        self.count = 0
        self.start = clock()
        self._last_draw = None
        self._last_count = 0
        self._last_time = self.start
        self.rate = None

    def update(self, n=1):
        self.count += n
        now = self.clock()
        if now - self._last_time >= self.interval:
            inst = (self.count - self._last_count) / (now - self._last_time)
            self.rate = inst if self.rate is None else \
                0.7 * self.rate + 0.3 * inst
            self._last_count, self._last_time = self.count, now
        if self._last_draw is None or now - self._last_draw >= self.interval:
            self._draw(now)

    def line(self, now=None):
        now = self.clock() if now is None else now
        elapsed = now - self.start
        rate = self.rate
        if rate is None and elapsed >= self.interval:
            rate = self.count / elapsed
        parts = [self.label] if self.label else []
        if self.total:
            pct = 100.0 * self.count / self.total
            parts.append(f"{self.count}/{self.total} ({pct:5.1f}%)")
        else:
            parts.append(str(self.count))
        parts.append("-- it/s" if rate is None else f"{rate:.1f} it/s")
        parts.append(f"elapsed {format_seconds(elapsed)}")
        if self.total and rate:
            eta = (self.total - self.count) / rate
            parts.append(f"ETA {format_seconds(eta)}")
        return "  ".join(parts)

    def _draw(self, now):
        self._last_draw = now
        if self.enabled:
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()

    def close(self):
        now = self.clock()
        if now > self.start:
            self.rate = self.count / (now - self.start)  # overall average
        self._draw(now)
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
