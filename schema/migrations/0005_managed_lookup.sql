-- Whether Git manages an object (has desired it at some time), asked of one object at a
-- time: an audit marks each cluster change out of band or not with this lookup, instead of
-- loading every managed object first (the primary key starts with side and origin).
CREATE INDEX current_state_resource ON current_state (resource, side);
