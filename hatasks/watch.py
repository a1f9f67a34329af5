"""Watch mode (``status --watch``, ``hb.status --watch``): the screen of a read-only task
refreshed every few seconds, like the runbook's ``crm_mon -i 3``.

On a terminal each frame clears the screen (cursor home + erase) and redraws; lines that were
not on the previous frame are marked with ``*`` in the left margin. When stdout is not a
terminal (a pipe, a log file) frames follow one another, each under a plain header line. In
JSON mode each interval prints one document on one line (``jq`` reads them one by one). Ctrl-C
ends the watch cleanly: exit 0, the terminal left as it was (nothing but plain text and the
clear/home codes is ever written, no mode is changed).
"""

import json
import sys
import time
from datetime import datetime

from hatasks.errors import HaError, UsageError

#: the refresh interval when --watch is given without seconds (crm_mon -i 3)
DEFAULT_SECONDS = 3
#: cursor home, then erase the whole screen
CLEAR = "\033[H\033[2J"
MARK = "* "
PLAIN = "  "


def seconds(value):
    """The --watch value: None (no watch) stays None; True (the bare flag) is DEFAULT_SECONDS;
    else a number of seconds from 0.2 to 3600, or UsageError."""
    if value is None or value is False:
        return None
    if value is True or value == "":
        return float(DEFAULT_SECONDS)
    try:
        number = float(str(value).strip())
    except ValueError:
        raise UsageError(f"--watch {value!r}: a number of seconds please") from None
    if not 0.2 <= number <= 3600:
        raise UsageError(f"--watch {value!r}: out of range (0.2-3600 seconds)")
    return number


def mark_changes(previous, lines, key=None):
    """LINES with a margin: MARK on each line that the PREVIOUS frame (a list of lines, None on
    the first frame) did not have as many times, PLAIN on the others. KEY(line) is what is
    compared (default the line itself: a task drops what changes every time, a duration)."""
    key = key or (lambda line: line)
    if previous is None:
        return [PLAIN + line for line in lines]
    left = {}
    for line in previous:
        left[key(line)] = left.get(key(line), 0) + 1
    out = []
    for line in lines:
        if left.get(key(line), 0) > 0:
            left[key(line)] -= 1
            out.append(PLAIN + line)
        else:
            out.append(MARK + line)
    return out


def loop(frame, interval, fmt, title, stream=None, sleep=None, clock=None, frames=None,
         key=None):
    """Run FRAME() every INTERVAL seconds until Ctrl-C (or FRAMES frames, for tests).

    FRAME returns (data, text): data for JSON, text for the table. An HaError from FRAME is
    shown as that frame ({"error", "code"} in JSON) and the watch goes on. Returns the number
    of frames shown; a Ctrl-C returns normally (the task exits 0). KEY: see mark_changes."""
    stream = stream or sys.stdout
    sleep, clock = sleep or time.sleep, clock or time.monotonic
    tty = bool(getattr(stream, "isatty", lambda: False)())
    previous, shown = None, 0
    try:
        while frames is None or shown < frames:
            started = clock()
            try:
                data, text = frame()
            except HaError as exc:
                data, text = {"error": exc.message, "code": exc.code}, f"error: {exc.message}"
            now = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            if fmt == "json":
                stream.write(json.dumps(dict(data, watched_at=now), default=str) + "\n")
            else:
                lines = text.splitlines()
                head = (f"Every {interval:g}s: {title}   {now}   "
                        f"({MARK.strip()} = changed since the last refresh; Ctrl-C to leave)")
                body = "\n".join(mark_changes(previous, lines, key))
                if tty:
                    stream.write(CLEAR + head + "\n\n" + body + "\n")
                else:
                    stream.write(("\n" if shown else "") + f"---- {head}\n{body}\n")
                previous = lines
            stream.flush()
            shown += 1
            if frames is not None and shown >= frames:
                break
            sleep(max(0.0, interval - (clock() - started)))
    except KeyboardInterrupt:
        if tty and fmt != "json":  # the terminal echoed ^C: the prompt gets a line of its own
            try:
                stream.write("\n")
                stream.flush()
            except (OSError, ValueError):
                pass
    return shown
