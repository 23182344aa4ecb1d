-- What each change of an object changed (gitops/store/changes.py): for every event that
-- changes an object its source had already set (desired.applied, cluster.observed after an
-- earlier version from the same side and origin), the changed fields against that version,
-- as a JSON list of [path, old, new]. An event that sets or removes an object and has no
-- row here created or removed it. Written in the same transaction as the event, so that an
-- audit reads what a row changed instead of finding the previous version and diffing the
-- two on every read. Derived: rebuilt from the log when its version changes (the
-- projections table), checked by 'gitops verify --projections'.
CREATE TABLE changes (
    seq    INTEGER PRIMARY KEY,   -- the event's
    fields TEXT NOT NULL
);
