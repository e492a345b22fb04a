"""The table properties the pipeline sets and reads, named once for the Spark side
(`tables`) and the readers without Spark (`delta_log`)."""

from __future__ import annotations

CHANGE_FEED_PROPERTY = "delta.enableChangeDataFeed"
# Every table the pipeline creates (deletion vectors are the config's choice,
# `tables.deletion_vectors`, applied by the session to every table it creates, since readers
# outside Spark may not open such tables).
TABLE_PROPERTIES = {CHANGE_FEED_PROPERTY: "true"}
# What a state table records about its fold, for readers that do not know it (`diff`).
FOLD_PROPERTY, MEASURE_PROPERTY = "backfill.fold", "backfill.measure"
