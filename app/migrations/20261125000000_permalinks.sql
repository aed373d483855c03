-- Shared views: a snapshot (view settings + computed results, JSON) under its content address.
CREATE TABLE IF NOT EXISTS permalinks (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    body TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
