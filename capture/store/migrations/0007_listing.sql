-- Each copy keeps its listing head: its own EmailMessage fields as the
-- opening of the object's text (capture.emailmessage.listingHead), so a
-- listing is the stored texts joined, without JSON made per request
-- (capture.store._listing).  The Python step fills it for stored copies.
-- Numbered 0007 because 0006 is taken by another change of the same release.
ALTER TABLE copies ADD COLUMN listing_head TEXT;
