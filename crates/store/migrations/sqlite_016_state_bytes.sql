-- Customer states are written as bytes (BLOB) in the state crate's compact encoding; rows written before it
-- hold the JSON form as text until they are rewritten. Applied on every open after the files before it,
-- idempotent. This partial index holds the text rows alone, so finding what is left to rewrite reads only
-- them (nothing once done), however many customers there are.
CREATE INDEX IF NOT EXISTS customers_text_state ON customers(customer_id) WHERE typeof(state) = 'text';
