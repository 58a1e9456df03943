-- The message's summary (capture.summary): the message-level fields of
-- Mailsac's EmailMessage as JSON text, so a listing row is built by SQLite
-- from it and the copy's own fields. Rows stored before this migration are
-- filled in by SQLiteStore._migrate, in the same transaction.
ALTER TABLE messages ADD COLUMN summary_json TEXT;
