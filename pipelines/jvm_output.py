"""Keep the JVM's start-up chatter out of the user's terminal, and everything else in it.

The driver JVM that PySpark launches writes to the same stderr as the CLI. At start it prints
a few lines that say nothing to a user (a JDK incubator-module warning, the shell's default
log level). `filtered_stderr` gives the JVM a pipe instead of our stderr while it starts; a
daemon thread forwards what it writes, minus those lines, for the rest of its life.

The JVM's stdout goes through the same pipe to stderr: stdout is the command's own output
(`--json` lines a script parses), and Delta prints there now and then (VACUUM's "Deleted N
files and directories" line).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SEGMENT_END = re.compile(rb"(?<=[\r\n])")
NOISE = (
    b"WARNING: Using incubator modules",
    b"Setting default log level to",
    b"To adjust logging level use sc.setLogLevel",
    # slf4j 1.x, which a bundled library carries, finding no binding (it then logs nothing).
    b"SLF4J: ",
)


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Child processes started inside the block write their stdout and stderr to stderr,
    through the filter."""
    try:
        stderr_fd, stdout_fd = sys.stderr.fileno(), sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. a notebook kernel)
        yield
        return
    sys.stdout.flush()
    read_end, write_end = os.pipe()
    forward_to = os.dup(stderr_fd)
    saved = {fd: os.dup(fd) for fd in (stderr_fd, stdout_fd)}
    for fd in saved:
        os.dup2(write_end, fd)
    os.close(write_end)
    threading.Thread(target=_forward, args=(read_end, forward_to), daemon=True).start()
    try:
        yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def _forward(read_end: int, forward_to: int) -> None:
    """Copy segments ending in a newline or carriage return (progress bars), minus noise."""
    pending = b""
    while chunk := os.read(read_end, 65536):
        pending += chunk
        segments = _SEGMENT_END.split(pending)
        pending = segments.pop()
        out = b"".join(s for s in segments if not s.lstrip(b"\r").startswith(NOISE))
        if out:
            os.write(forward_to, out)
    if pending:
        os.write(forward_to, pending)
