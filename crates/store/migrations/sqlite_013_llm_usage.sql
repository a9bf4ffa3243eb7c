-- Generated copy's use of the LLM, per calendar month (UTC, `2026-12`): tokens counted against
-- `llm.monthly_token_budget` (restored into the client at boot, so a restart does not reset the budget),
-- generations and how many of them used the fallback copy. Applied on every open (idempotent).
CREATE TABLE IF NOT EXISTS llm_usage (
    month       TEXT PRIMARY KEY,
    tokens      INTEGER NOT NULL DEFAULT 0,
    generations INTEGER NOT NULL DEFAULT 0,
    fallbacks   INTEGER NOT NULL DEFAULT 0
);
