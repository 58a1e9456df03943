-- Web sessions are signed cookies with no server state; signing out must
-- still end them.  Each cookie carries the account's session generation at
-- sign-in, and signing out raises it, so every cookie issued before no
-- longer matches (capture.web.websession).  Numbered 0005 because 0004 is
-- taken by another change of the same release.
ALTER TABLE accounts ADD COLUMN session_generation INTEGER NOT NULL DEFAULT 0;
