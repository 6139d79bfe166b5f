-- Spinel's SQL datastore, version 1 (PostgreSQL).
-- Records are JSON in `record`; the columns beside it are what queries
-- look up by. Identifiers compare bytewise (COLLATE "C"), so listings
-- come back in the order the sled backend gives.
CREATE TABLE entries (
    id TEXT COLLATE "C" PRIMARY KEY,
    spiffe_id TEXT COLLATE "C" NOT NULL,
    parent_id TEXT COLLATE "C" NOT NULL,
    similar_key TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE INDEX entries_by_parent ON entries (parent_id, id);
CREATE INDEX entries_by_spiffe_id ON entries (spiffe_id, id);
CREATE TABLE entry_changes (
    revision BIGINT PRIMARY KEY,
    entry_id TEXT NOT NULL
);
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO counters (name, value) VALUES ('entries_revision', 0), ('entry_changes_floor', 0);
CREATE TABLE agents (
    spiffe_id TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE join_tokens (
    value TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX join_tokens_by_expiry ON join_tokens (expires_at);
CREATE TABLE bundles (
    trust_domain TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE federation_relationships (
    trust_domain TEXT COLLATE "C" PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE ca_journal (
    id BIGINT PRIMARY KEY,
    journal BYTEA NOT NULL
)
