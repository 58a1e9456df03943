-- ENVELOPE and BODYSTRUCTURE as issue 12 reads them (RFC 5322 groups,
-- source routes, Sender/Reply-To defaults; parameters folded inside their
-- quotes): the texts of messages stored before this migration are written
-- again, and the part tree of those with a folded parameter, by
-- SQLiteStore._migrate (_refreshIMAP), in the same transaction.
SELECT 1;
