-- Changes to the cluster that the reconciler did not make, by time: the rows an out-of-band
-- query (gitops audit --out-of-band, the report's section) reads, found without scanning
-- every cluster change of the range. A partial index: its WHERE is the first two terms of
-- gitops.store.log.OUT_OF_BAND, which queries repeat word for word so SQLite can use it.
CREATE INDEX events_by_hand ON events (effective_at)
    WHERE type IN ('cluster.observed', 'cluster.deleted') AND json_extract(payload, '$.attribution') IS NOT 'reconciler';
