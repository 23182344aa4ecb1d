-- The event log: one append-only table, one row per event, in one global order.
-- Rows are never updated or deleted (DESIGN.md, "The event log").
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY,      -- global position, strictly increasing
    id           TEXT NOT NULL UNIQUE,     -- deterministic idempotency key
    type         TEXT NOT NULL,
    source       TEXT NOT NULL,
    resource     TEXT,                     -- canonical ResourceKey string
    actor        TEXT,
    effective_at TEXT NOT NULL,            -- valid time, RFC 3339 UTC, fixed width
    recorded_at  TEXT NOT NULL,            -- transaction time, non-decreasing with seq
    revision     TEXT,                     -- commit sha or resourceVersion
    payload      TEXT NOT NULL,            -- JSON, validated by the event's model
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX events_resource ON events (resource, seq);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_effective_at ON events (effective_at);
CREATE INDEX events_recorded_at ON events (recorded_at);

-- Where each source stopped: written in the same transaction as the events it produced.
CREATE TABLE checkpoints (
    name       TEXT PRIMARY KEY,           -- e.g. 'git:<repo>#<branch>', 'cluster:apps/Deployment'
    value      TEXT NOT NULL,              -- JSON
    seq        INTEGER NOT NULL,           -- last seq when it was written
    updated_at TEXT NOT NULL
);

-- The head of the chain, so that cutting rows off the end is detected too.
CREATE TABLE chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
