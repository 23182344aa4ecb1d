-- Packed payloads (gitops/store/pack.py): a payload of a few hundred bytes or more is stored
-- deflated, as a delta against an earlier version of the same object (its keyframe) where it
-- can be. The payload column then keeps only the fields SQL reads; the hashed text is what
-- unpacking gives back, byte for byte. Rows written before stay as they are until
-- 'gitops compact' packs them.
ALTER TABLE events ADD COLUMN packed BLOB;   -- NULL: the payload column holds the whole payload
ALTER TABLE events ADD COLUMN base INTEGER;  -- the keyframe's seq (a delta), NULL (a keyframe, or not packed)
-- The deltas made against each keyframe: 'gitops compact' never packs a row another row is a
-- delta of.
CREATE INDEX events_base ON events (base) WHERE base IS NOT NULL;
