-- Results stored once under their content hash; a shared view is a small row that names the
-- results it shows, so views that differ only in display settings cost bytes, not megabytes.
CREATE TABLE IF NOT EXISTS results (
    hash TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS views (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    body TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Bytes stored, kept as one row that every share updates in its own transaction: the
-- quota check is that update's condition, so concurrent shares cannot overrun the quota.
CREATE TABLE IF NOT EXISTS storage_usage (
    name TEXT PRIMARY KEY,
    bytes BIGINT NOT NULL
);
INSERT INTO storage_usage (name, bytes)
    SELECT 'permalinks', CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM permalinks;
