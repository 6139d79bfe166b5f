-- Version 2 (SQLite): one CA journal per server. Servers sharing the
-- database each keep their own CA (keys never enter the database); the
-- version 1 journal (ca_journal, id = 1) is adopted by the first server
-- that starts without one of its own.
CREATE TABLE ca_journals (
    server_id TEXT PRIMARY KEY,
    journal BLOB NOT NULL
)
