-- Packed audit rows: consecutive records of one trace, customer and instant share a row (`stage` names their
-- stages joined by `+`, the detail is the JSON array of their details), and a detail of 256 bytes or more is
-- stored LZ4-compressed in `detail_lz4` (with `detail` NULL) when that makes it smaller. Rows written before
-- (one record each, the detail as text) are read as they are. Applied once: the check keeps a node's start
-- from taking the table's exclusive lock again.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'audit' AND column_name = 'detail_lz4'
    ) THEN
        ALTER TABLE audit ADD COLUMN detail_lz4 BYTEA;
        ALTER TABLE audit ALTER COLUMN detail DROP NOT NULL;
    END IF;
END
$$;
