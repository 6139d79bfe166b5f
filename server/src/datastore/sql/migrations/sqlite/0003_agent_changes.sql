-- Version 3 (SQLite): the agent change log. Every agent write files the
-- agent's SPIFFE ID under a new revision, so that servers sharing the
-- database can keep agent records in memory and drop only the ones
-- another server changed (bans, evictions, renewals).
CREATE TABLE agent_changes (
    revision BIGINT PRIMARY KEY,
    spiffe_id TEXT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('agents_revision', 0), ('agent_changes_floor', 0)
