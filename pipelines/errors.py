"""Exceptions that map to the contract's exit codes (section 6)."""

from __future__ import annotations


class BackfillError(Exception):
    """Base class; `exit_code` is what the CLI returns."""

    exit_code = 1


class UsageError(BackfillError):
    """Bad arguments, unreadable config, unknown fold, missing source: exit 2, one line."""

    exit_code = 2


class RunFailed(BackfillError):
    """The run failed; the state table is left at its last committed version: exit 1."""

    exit_code = 1
