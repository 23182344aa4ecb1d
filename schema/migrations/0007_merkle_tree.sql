-- The Merkle tree of RFC 9162 over the events' hashes (gitops/store/tree.py): leaf i is
-- SHA-256(0x00 || the hash of event seq i+1). Its compact range (the roots of the perfect
-- subtrees a tree of `size` leaves is made of, largest first, 32 bytes each) is rewritten in
-- every append transaction, so a new root costs O(log n); the roots of the perfect subtrees
-- of 256 leaves and more are kept too, so that any proof reads O(log n) rows and at most a
-- few hundred leaves. Derived from the events: rebuilt when its version changes.
CREATE TABLE merkle_frontier (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    size   INTEGER NOT NULL,
    hashes BLOB NOT NULL
);
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,   -- the subtree covers 2^level leaves
    idx   INTEGER NOT NULL,   -- its position at that level: leaves idx*2^level .. (idx+1)*2^level - 1
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
