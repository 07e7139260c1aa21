"""Reading tables: the query API (:func:`danas_bench.open`, ``bench``) and what it is built from:
``catalog`` (which tables exist, which one opens), ``metrics`` (what may be asked), ``store`` (the column
store), ``overlay`` and ``live`` (what the tables lack, trained and cached), ``facts`` (params, FLOPs,
latency, task descriptors) and ``estimates`` (the expected-accuracy files)."""
