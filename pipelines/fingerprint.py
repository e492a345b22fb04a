"""A state version's fingerprint (contract section 10), and which one a version carries.

The fingerprint is an order-independent digest of every row of the state at a version: the
row count and the sum, modulo 2**64, of a 64-bit hash of each row's values
(`pipelines.transforms.fingerprint` computes the hash in Spark). A sum can be updated from
the rows a run changes alone: minus the hashes of the rows it replaces or deletes, plus the
hashes of the rows it writes; so a night never reads the whole state to keep it.

Every state commit of a run records the fingerprint of the version it makes in its
`userMetadata`. A version's fingerprint is found from the log alone (`recorded`): the
newest commit up to it that records one, through commits that change no row (OPTIMIZE,
VACUUM, property changes) and RESTOREs (the restored version's); a table's CREATE is empty.
A commit that changes rows and records none was written outside the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FINGERPRINT_FIELD = "fingerprint"
MODULUS = 1 << 64
# Commits that change no row: a version made by one reads the rows of the version before it.
NO_ROW_CHANGE = frozenset(
    {
        "OPTIMIZE",
        "VACUUM START",
        "VACUUM END",
        "SET TBLPROPERTIES",
        "UNSET TBLPROPERTIES",
        "UPGRADE PROTOCOL",
        "ADD CONSTRAINT",
        "DROP CONSTRAINT",
        "CHANGE COLUMN",
    }
)
EMPTY_TABLE = frozenset({"CREATE TABLE"})


@dataclass(frozen=True)
class Fingerprint:
    """Row count and the sum of the rows' hashes, modulo 2**64; a change to a state is one
    too (rows added, hashes written minus hashes removed), added with `plus`."""

    rows: int
    digest: int

    @classmethod
    def of_hashes(cls, rows: int, hash_sum: int) -> Fingerprint:
        return cls(rows, hash_sum % MODULUS)

    def plus(self, other: Fingerprint) -> Fingerprint:
        return Fingerprint(self.rows + other.rows, (self.digest + other.digest) % MODULUS)

    def to_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "xxhash64_sum": f"{self.digest:016x}"}

    @classmethod
    def from_json(cls, value: Any) -> Fingerprint | None:
        """The fingerprint a commit recorded, or None where it holds none (or not one of ours)."""
        if not isinstance(value, Mapping):
            return None
        try:
            return cls(int(value["rows"]), int(str(value["xxhash64_sum"]), 16) % MODULUS)
        except (KeyError, TypeError, ValueError):
            return None

    def __str__(self) -> str:
        return f"{self.rows:,} rows, xxhash64 sum {self.digest:016x}"


EMPTY = Fingerprint(0, 0)


@dataclass(frozen=True)
class Recorded:
    """What the log says of a version's rows: the fingerprint that holds for it and the
    commit that recorded it, or (fingerprint None) the commit that changed rows without one."""

    fingerprint: Fingerprint | None
    version: int  # the commit that recorded it, or the one that changed rows without it
    operation: str
    writer: str | None  # `userMetadata.writer` of that commit, when it names one

    def describe_outside(self) -> str:
        by = f"by {self.writer}" if self.writer else "outside the pipeline"
        return f"version {self.version} ({self.operation} {by}) records no fingerprint"


def user_metadata(commit: Mapping[str, Any]) -> dict[str, Any]:
    """A commit's `userMetadata` as a JSON object (empty where it holds none or other text)."""
    text = commit.get("userMetadata")
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def recorded(commits: Iterable[Mapping[str, Any]], version: int) -> Recorded | None:
    """The fingerprint that holds for `version`, from the table's commits (any order).

    None when the log no longer reaches back far enough to tell (its old commits cleaned up
    and no fingerprint on the way).
    """
    by_version = {int(c["version"]): c for c in commits}
    current: int | None = version
    while current is not None and current in by_version:
        commit = by_version[current]
        operation = str(commit.get("operation") or "")
        metadata = user_metadata(commit)
        found = Fingerprint.from_json(metadata.get(FINGERPRINT_FIELD))
        writer = metadata.get("writer")
        if operation in EMPTY_TABLE:  # (a run's CREATE carries the metadata of its MERGE)
            return Recorded(EMPTY, current, operation, writer)
        if found is not None:
            return Recorded(found, current, operation, writer)
        if operation == "RESTORE":
            restored = (commit.get("operationParameters") or {}).get("version")
            if restored is None:  # restored by timestamp: the log does not say which version
                return Recorded(None, current, operation, writer)
            current = int(restored)
            continue
        if operation not in NO_ROW_CHANGE:
            return Recorded(None, current, operation, writer)
        current -= 1
    return None
