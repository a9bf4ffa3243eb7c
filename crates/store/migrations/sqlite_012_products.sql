-- The catalogue: the newest record of each product (by the platform's `updated_at`), written in the
-- processing commit of the product event that carried it. `record` is the canonical product as JSON
-- (title, category, vendor, url, image, price, currency, availability, tags). Applied on every open
-- (idempotent).
CREATE TABLE IF NOT EXISTS products (
    id         TEXT PRIMARY KEY,
    source     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    record     TEXT NOT NULL
);
