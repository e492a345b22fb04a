"""Registry of folds; `get_fold(name)` is how the pipeline finds one."""

from __future__ import annotations

from pipelines.errors import UsageError
from pipelines.folds.balance import BalanceFold
from pipelines.folds.base import EVENT_COLUMNS, Fold

FOLDS: dict[str, type[Fold]] = {BalanceFold.name: BalanceFold}


def get_fold(name: str) -> Fold:
    try:
        return FOLDS[name]()
    except KeyError:
        known = ", ".join(sorted(FOLDS))
        raise UsageError(f"unknown fold {name!r}; known folds: {known}") from None


__all__ = ["EVENT_COLUMNS", "FOLDS", "Fold", "get_fold"]
