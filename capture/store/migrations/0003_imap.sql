-- What IMAP serves of a message without parsing it again (capture.imapdata):
-- its ENVELOPE and BODYSTRUCTURE as ready protocol text, and the length of
-- its header block (BODY[HEADER], HEADER.FIELDS and BODY[TEXT] are cut from
-- the raw bytes with it).  Rows stored before this migration are filled in
-- by SQLiteStore._migrate, in the same transaction.
ALTER TABLE messages ADD COLUMN imap_envelope TEXT;
ALTER TABLE messages ADD COLUMN imap_structure TEXT;
ALTER TABLE messages ADD COLUMN header_size INTEGER;
