"""Reading tables: the query API (:func:`danas_bench.open`), its column store, the live overlay that
caches what the tables lack, and the expected-accuracy files."""
