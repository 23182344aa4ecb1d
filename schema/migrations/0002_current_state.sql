-- The current state, kept in the same transaction as the events that change it
-- (gitops/store/current.py): for each object of each source, the event that set what
-- is desired (side 'desired') or what runs (side 'actual') now. The object itself stays
-- in that event's payload; a row here only points at it.
CREATE TABLE current_state (
    side     TEXT NOT NULL,               -- 'desired' or 'actual'
    origin   TEXT NOT NULL,               -- the source: 'git:<repo>#<branch>', 'cluster:<server>'
    resource TEXT NOT NULL,               -- canonical ResourceKey string
    seq      INTEGER NOT NULL,            -- the event that set it
    PRIMARY KEY (side, origin, resource)
);

-- Which version of each projection's tables is stored: a newer gitops rebuilds them from
-- the log when it opens the database to write.
CREATE TABLE projections (
    name    TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
