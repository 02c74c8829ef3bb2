"""Ages as kubectl prints them: the time since a timestamp, in k8s.io/apimachinery's
duration.HumanDuration ("45s", "3m12s", "5h", "2d3h"). An object without creationTimestamp
(a manifest computed by something other than podnet's commands) reads `<unknown>`, as kubectl's
printers say for a zero time."""

from __future__ import annotations

import calendar
import time

UNKNOWN = "<unknown>"
clock = time.time  # now, for ages (tests fix it)


def parse(stamp: str | None) -> float | None:
    """An RFC 3339 timestamp ("2026-12-05T18:55:05Z", fractions and offsets accepted) in seconds."""
    if not stamp or not isinstance(stamp, str):
        return None
    text = stamp.strip()
    offset = 0
    if text.endswith("Z"):
        text = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        sign = 1 if text[-6] == "+" else -1
        offset = sign * (int(text[-5:-3]) * 3600 + int(text[-2:]) * 60)
        text = text[:-6]
    text, _, fraction = text.partition(".")
    try:
        seconds = calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return seconds - offset + (float("0." + fraction) if fraction.isdigit() else 0.0)


def human_duration(seconds: float) -> str:
    """duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // (24 * 365)}y"


def since(stamp: str | None, now: float | None = None) -> str:
    """The age of `stamp`, or <unknown> without one."""
    seconds = parse(stamp)
    if seconds is None:
        return UNKNOWN
    return human_duration((clock() if now is None else now) - seconds)


def until(stamp: str | None, now: float | None = None) -> str:
    """The time left until `stamp` (kubectl's translateTimestampUntil), or <unknown> without one."""
    seconds = parse(stamp)
    if seconds is None:
        return UNKNOWN
    return human_duration(seconds - (clock() if now is None else now))


def between(start: str | None, end: str | None) -> str:
    """The time from one timestamp to another (a Job's DURATION once it completed)."""
    first, last = parse(start), parse(end)
    return UNKNOWN if first is None or last is None else human_duration(last - first)
