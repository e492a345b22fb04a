"""Finding a fold (contract section 8): a built-in by name, an installed plugin by the name
it registers in the `backfill.folds` entry-point group, or any class by import path
(`package.module:ClassName`). Options from the config's `fold_options:` reach its constructor.

A plugin package registers its folds in its `pyproject.toml`:

    [project.entry-points."backfill.folds"]
    stock = "acme_folds.stock:StockFold"
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from importlib import metadata
from typing import Any

from pyspark import cloudpickle

from pipelines.errors import UsageError
from pipelines.folds.balance import BalanceFold
from pipelines.folds.base import (
    BOOKKEEPING,
    COMMON_COLUMNS,
    EventField,
    Fold,
    RowFold,
    missing_bookkeeping,
    sequence_counts,
    state_schema_with,
)
from pipelines.folds.snapshot import SnapshotFold

BUILT_IN: dict[str, type[Fold]] = {BalanceFold.name: BalanceFold, SnapshotFold.name: SnapshotFold}
ENTRY_POINT_GROUP = "backfill.folds"


def get_fold(spec: str, options: dict[str, Any] | None = None) -> Fold:
    """The fold `spec` names, built with `options`; a usage error (exit 2) if there is none,
    or if it cannot be loaded or built."""
    fold_class = _find(spec)
    try:
        fold = fold_class(**(options or {}))
    except TypeError as exc:
        raise UsageError(f"fold {spec!r} does not take the options {options}: {exc}") from exc
    except (ValueError, KeyError) as exc:
        raise UsageError(f"fold {spec!r} refused its options {options}: {exc}") from exc
    _check_declarations(spec, fold)
    return fold


def known_folds() -> list[str]:
    """Built-in and installed fold names, for messages and `--help`."""
    return sorted({*BUILT_IN, *(ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))})


def _find(spec: str) -> type[Fold]:
    if ":" in spec:
        return _import(spec, spec)
    if spec in BUILT_IN:
        return BUILT_IN[spec]
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP, name=spec):
        return _import(entry_point.value, spec, by_value=False)
    raise UsageError(
        f"unknown fold {spec!r}; known folds: {', '.join(known_folds())} "
        "(or give one by import path, package.module:ClassName)"
    )


def _import(path: str, spec: str, by_value: bool = True) -> type[Fold]:
    module_name, _, class_name = path.partition(":")
    if os.getcwd() not in sys.path:  # as `python -m` would: modules of the working directory
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module
        raise UsageError(f"cannot load fold {spec!r}: {type(exc).__name__}: {exc}") from exc
    found: Any = module
    for part in class_name.split(".") if class_name else []:
        found = getattr(found, part, None)
    if not (inspect.isclass(found) and issubclass(found, Fold)):
        raise UsageError(f"cannot load fold {spec!r}: {path} is not a subclass of pipelines Fold")
    if inspect.isabstract(found):
        missing = ", ".join(sorted(found.__abstractmethods__))
        raise UsageError(f"cannot load fold {spec!r}: {class_name} does not implement {missing}")
    if by_value and not _installed(module.__name__):
        # A module found on the working directory's path is not on the executors': its code
        # travels with the job instead, so a cluster runs it without installing anything.
        cloudpickle.register_pickle_by_value(module)
    return found


def _installed(module_name: str) -> bool:
    top = module_name.partition(".")[0]
    return top in metadata.packages_distributions() or top == "pipelines"


def _check_declarations(spec: str, fold: Fold) -> None:
    """What the pipeline relies on, checked once before any Spark work."""
    problems = []
    for attribute in ("name", "ops", "state_schema"):
        if not hasattr(fold, attribute):
            problems.append(f"it declares no {attribute}")
    if not problems:
        columns = [f.name for f in fold.state_schema.fields]
        if not columns or columns[0] != "key":
            problems.append("its state_schema does not start with `key`")
        missing = missing_bookkeeping(fold.state_schema)
        if missing:
            problems.append(
                f"its state_schema lacks the bookkeeping columns {', '.join(missing)} "
                "(build it with pipelines.folds.state_schema_with)"
            )
        for column in (fold.measure, fold.count_column):
            if column is not None and column not in columns:
                problems.append(f"its state_schema has no column {column!r}")
        if not fold.ops:
            problems.append("it declares no ops")
        for field in fold.fields:
            if not isinstance(field, EventField):
                problems.append(f"its field {field!r} is not an EventField")
            elif field.required_for is not None and not field.required_for <= fold.ops:
                problems.append(f"field {field.name} is required for ops it does not declare")
            elif not field.ignored_for <= fold.ops:
                problems.append(f"field {field.name} is ignored for ops it does not declare")
            elif field.ignored_for & (
                fold.ops if field.required_for is None else field.required_for
            ):
                problems.append(f"field {field.name} is both required and ignored for an op")
    if problems:
        raise UsageError(f"fold {spec!r} cannot run: {'; '.join(problems)}")


__all__ = [
    "BOOKKEEPING",
    "BUILT_IN",
    "COMMON_COLUMNS",
    "ENTRY_POINT_GROUP",
    "EventField",
    "Fold",
    "RowFold",
    "get_fold",
    "known_folds",
    "sequence_counts",
    "state_schema_with",
]
