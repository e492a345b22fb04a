"""The contract's exit codes (section 6) and the exceptions that map to them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What `backfill` returns."""

    OK = 0
    FAILED = 1  # the run failed; the tables stay at their last committed versions
    USAGE = 2  # usage or configuration error: one line on stderr, no traceback
    QUARANTINE = 3  # the run finished but crossed the quarantine threshold
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class BackfillError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = ExitCode.FAILED


class UsageError(BackfillError):
    """Bad arguments, unreadable config, unknown fold, missing source: exit 2, one line."""

    exit_code = ExitCode.USAGE


class RunFailed(BackfillError):
    """The run failed; the state table is left at its last committed version: exit 1."""

    exit_code = ExitCode.FAILED
