-- API tokens (`nudge tokens`). Applied on every open after sqlite_001_init.sql, like it idempotent, so a
-- database written before tokens existed gains the table when it is next opened.
-- The token itself is never stored: `token_hash` is its SHA-256, hex. Names stay unique after revocation,
-- so the audit trail's attributions (by name) stay unambiguous.
CREATE TABLE IF NOT EXISTS api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
