"""A failed run, told in one line; its full trace, Python's and the JVM's, kept in a log file.

Spark's errors reach Python wrapped by Py4J (`An error occurred while calling o840...`) with
the whole Java stack in their text. The terminal gets one line: what the run was doing, the
cause in plain words (an S3 endpoint that stopped answering is named as such), and where the
trace was written.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path
from typing import Any

from pipelines.config import S3Config
from pipelines.errors import RunFailed

# Causes that mean the S3 endpoint did not answer (timeouts, refused or reset connections).
ENDPOINT_DOWN = (
    "ApiCallTimeoutException",
    "ApiCallAttemptTimeoutException",
    "ConnectTimeoutException",
    "SocketTimeoutException",
    "ConnectException",
    "NoHttpResponseException",
    "Unable to execute HTTP request",
    "Connection refused",
    "Read timed out",
    "ConnectTimeoutError",  # botocore
    "ReadTimeoutError",
    "EndpointConnectionError",
)
_CLASS_PREFIX = re.compile(r"^(?:[\w$]+\.)+[\w$]*(?:Exception|Error|Throwable)(?::\s*|$)")
_PY4J_WRAPPER = re.compile(r"^An error occurred while calling [\w.]+\.?\s*:?\s*")
_S3_URI = re.compile(r"s3a?://[^\s,;'\"\]]*[^\s,;:'\"\].]")


def describe_failure(exc: BaseException, doing: str | None, s3: S3Config | None) -> str:
    """One line: what the run was doing and why it failed, without Java or Py4J text."""
    causes = cause_messages(exc)
    every = " ".join(causes)
    on_s3 = "s3a://" in every or "s3://" in every or "s3" in (doing or "")
    if s3 is not None and on_s3 and any(marker in every for marker in ENDPOINT_DOWN):
        where = s3.endpoint or "AWS S3"
        uri = _S3_URI.search(every)
        at = f" ({uri.group(0)})" if uri and uri.group(0) not in (doing or "") else ""
        return (
            f"S3 endpoint {where} stopped answering while {doing or 'working'}{at}; "
            f"gave up after {s3.retry_limit + 1} attempts of {s3.s3a_request_timeout_seconds:g} s"
        )
    gist = _plain(causes[0]) if causes else type(exc).__name__
    root = _plain(causes[-1]) if len(causes) > 1 else ""
    text = f"{gist} (cause: {root})" if root and root not in gist else gist
    text = f"while {doing}: {text}" if doing else text
    return text if len(text) <= 400 else text[:397] + "..."


def cause_messages(exc: BaseException) -> list[str]:
    """The messages of `exc` and its causes, outermost first; a Java exception's own chain
    when Py4J wrapped one."""
    java = getattr(exc, "java_exception", None)
    messages: list[str] = []
    if java is not None:
        throwable: Any = java
        while throwable is not None and len(messages) < 20:
            messages.append(str(throwable.toString()))
            throwable = throwable.getCause()
        return messages
    current: BaseException | None = exc
    while current is not None and len(messages) < 20:
        lines = [line.strip() for line in str(current).splitlines() if line.strip()]
        if any(line.startswith("Traceback") for line in lines):  # a Python worker's error
            errors = [line for line in lines if re.match(r"^[A-Za-z_.]+(Error|Exception): ", line)]
            lines = errors[-1:] or lines
        messages.append(" ".join(lines[:1]) or type(current).__name__)
        current = current.__cause__ or current.__context__
    return messages


def _plain(message: str) -> str:
    """A message without Py4J's wrapper and the Java class names in front of it."""
    text = _PY4J_WRAPPER.sub("", message.strip())
    while (stripped := _CLASS_PREFIX.sub("", text, count=1)) != text:
        text = stripped
    return " ".join(text.split())


def save_trace(exc: BaseException, log_file: Path) -> Path | None:
    """Append the full Python trace (with the JVM's, when Py4J carried one) to `log_file`."""
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a", encoding="utf-8") as log:
            log.write("".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return log_file


_VANISHED = re.compile(r"FILE_NOT_EXIST\].*?reading file (\S+?)\. File does not exist")


def vanished_source(exc: BaseException) -> RunFailed | None:
    """A source file removed while the run read it, told as such; None for other failures."""
    vanished = _VANISHED.search(str(exc))
    if vanished is None:
        return None
    return RunFailed(
        f"source file {vanished.group(1)} disappeared while the run read it; nothing was "
        "written: run again once the sources stop changing"
    )
