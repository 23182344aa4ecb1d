-- Indexes for the audit queries (gitops audit, gitops report): a time range of one type
-- or one actor is read through an index, not by scanning the log.
CREATE INDEX events_type_time ON events (type, effective_at);
CREATE INDEX events_actor_time ON events (actor, effective_at);
CREATE INDEX events_source_time ON events (source, effective_at);
