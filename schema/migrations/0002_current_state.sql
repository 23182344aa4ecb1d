-- The current state, kept in the same transaction as the events that change it
-- (gitops/store/current.py): for each object of each source, the last event about what is
-- desired (side 'desired') or what runs (side 'actual'). The object itself stays in that
-- event's payload; a row here only points at it. A removal is kept as a row with
-- present = 0 (a tombstone), so that snapshots of this table can be merged with later
-- events by sequence alone.
CREATE TABLE current_state (
    side     TEXT NOT NULL,               -- 'desired' or 'actual'
    origin   TEXT NOT NULL,               -- the source: 'git:<repo>#<branch>', 'cluster:<server>'
    resource TEXT NOT NULL,               -- canonical ResourceKey string
    seq      INTEGER NOT NULL,            -- the last event about it
    present  INTEGER NOT NULL,            -- 1: that event set it; 0: it removed it
    PRIMARY KEY (side, origin, resource)
);

-- Copies of current_state every so many events: a past moment is the nearest copy before it
-- plus the events after it, not a fold of the whole log.
CREATE TABLE snapshots (
    id           INTEGER PRIMARY KEY,
    seq          INTEGER NOT NULL,        -- the last event the copy holds
    effective_at TEXT NOT NULL,           -- the latest valid time among those events
    recorded_at  TEXT NOT NULL            -- when the last of them was recorded
);
CREATE INDEX snapshots_effective_at ON snapshots (effective_at);
CREATE TABLE snapshot_entries (
    snapshot INTEGER NOT NULL,
    side     TEXT NOT NULL,
    origin   TEXT NOT NULL,
    resource TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    present  INTEGER NOT NULL,
    PRIMARY KEY (snapshot, side, origin, resource)
);

-- Which version of each projection's tables is stored: a newer gitops rebuilds them from
-- the log when it opens the database to write.
CREATE TABLE projections (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
