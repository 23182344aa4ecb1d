-- The event log on PostgreSQL (gitops/store/postgres.py): the tables of the SQLite
-- migrations in schema/ (gitops/store/migrations/0001..0008), in one file, in PostgreSQL's
-- types. Same columns, same meaning; the payload is kept as the exact text that was
-- hashed (TEXT, not jsonb, which would reorder its keys), and cast to jsonb where a query
-- reads a field of it.
CREATE TABLE gitops_schema (version INTEGER NOT NULL);
CREATE DOMAIN blob AS BYTEA;  -- SQLite's name, so that a read's CAST (gitops/store/pack.py) is one statement

CREATE TABLE events (
    seq          BIGINT PRIMARY KEY,       -- gapless: given under the append lock, never by a sequence
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    source       TEXT NOT NULL,
    resource     TEXT,
    actor        TEXT,
    effective_at TEXT NOT NULL,
    recorded_at  TEXT NOT NULL,
    revision     TEXT,
    payload      TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    packed       BYTEA,                    -- gitops/store/pack.py: the payload deflated, a delta where it can be
    base         BIGINT                    -- the keyframe's seq of a delta
);
CREATE INDEX events_resource ON events (resource, seq);
CREATE INDEX events_base ON events (base) WHERE base IS NOT NULL;
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_effective_at ON events (effective_at);
CREATE INDEX events_recorded_at ON events (recorded_at);
CREATE INDEX events_type_time ON events (type, effective_at);
CREATE INDEX events_actor_time ON events (actor, effective_at);
CREATE INDEX events_source_time ON events (source, effective_at);

CREATE TABLE checkpoints (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE current_state (
    side     TEXT NOT NULL,
    origin   TEXT NOT NULL,
    resource TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    present  INTEGER NOT NULL,
    PRIMARY KEY (side, origin, resource)
);
CREATE INDEX current_state_resource ON current_state (resource, side);

CREATE TABLE snapshots (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq          BIGINT NOT NULL,
    effective_at TEXT NOT NULL,
    recorded_at  TEXT NOT NULL
);
CREATE INDEX snapshots_effective_at ON snapshots (effective_at);
CREATE TABLE snapshot_entries (
    snapshot BIGINT NOT NULL,
    side     TEXT NOT NULL,
    origin   TEXT NOT NULL,
    resource TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    present  INTEGER NOT NULL,
    PRIMARY KEY (snapshot, side, origin, resource)
);

CREATE TABLE projections (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);

CREATE TABLE changes (
    seq    BIGINT PRIMARY KEY,
    fields TEXT NOT NULL
);

CREATE TABLE merkle_frontier (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    size   BIGINT NOT NULL,
    hashes BYTEA NOT NULL
);
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,
    idx   BIGINT NOT NULL,
    hash  BYTEA NOT NULL,
    PRIMARY KEY (level, idx)
);
