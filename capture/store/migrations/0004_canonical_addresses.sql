-- Internationalized addresses get one canonical name (capture.addresses):
-- the local part lower case in NFC, the domain as lower-case U-labels, so
-- info@xn--exmple-cua.test and info@exämple.test are one inbox.  Inboxes,
-- owned addresses and custom domains stored before this migration in
-- another spelling (an A-label, a decomposed character) are renamed by
-- SQLiteStore._migrate (_canonicalNames), in the same transaction; names
-- that are no address under the new rule are left as they were.
SELECT 1;
