"""Pure `DataFrame -> DataFrame` steps of the backfill: validate, deduplicate, fold, reconcile."""
