-- Capture schema, version 1.
-- Times are integer milliseconds since the epoch (UTC).

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    created INTEGER NOT NULL,
    capture_private INTEGER NOT NULL DEFAULT 0,
    message_limit INTEGER
);

-- API keys are random with about 124 bits of entropy, so a plain SHA-256
-- digest is enough to store them safely and lets login be one index lookup.
CREATE TABLE api_keys (
    hash BLOB PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    prefix TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    revoked INTEGER
);
CREATE INDEX api_keys_account ON api_keys(account, prefix);

CREATE TABLE addresses (
    address TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    info TEXT NOT NULL DEFAULT '',
    forward TEXT,
    webhook TEXT,
    enablews INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX addresses_account ON addresses(account);

CREATE TABLE domains (
    domain TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
    is_private INTEGER NOT NULL DEFAULT 1,
    created INTEGER NOT NULL
);
CREATE INDEX domains_account ON domains(account);

-- One row per SMTP transaction, with what was parsed at ingest.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    queue_id TEXT NOT NULL UNIQUE,
    received INTEGER NOT NULL,
    account TEXT,
    mail_from TEXT NOT NULL,
    helo TEXT NOT NULL,
    ip TEXT NOT NULL,
    via TEXT NOT NULL,
    tls INTEGER NOT NULL,
    size INTEGER NOT NULL,
    subject TEXT NOT NULL,
    from_json TEXT NOT NULL,
    to_json TEXT NOT NULL,
    cc_json TEXT NOT NULL,
    bcc_json TEXT NOT NULL,
    date TEXT,
    message_id TEXT,
    links_json TEXT NOT NULL,
    attachments_json TEXT NOT NULL
);
CREATE INDEX messages_account ON messages(account, id);

-- Bodies and raw bytes live apart from the listing columns, so scanning a
-- listing never pages through them.
CREATE TABLE message_bodies (
    message INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    text TEXT,
    html TEXT,
    headers_json TEXT NOT NULL,
    structure_json TEXT NOT NULL
);

CREATE TABLE message_raw (
    message INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    raw BLOB NOT NULL
);

CREATE TABLE attachments (
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    md5 TEXT NOT NULL,
    part TEXT NOT NULL,
    PRIMARY KEY (message, part)
);
CREATE INDEX attachments_md5 ON attachments(md5);

-- One row per recipient inbox.  uid is one store-wide sequence assigned in
-- commit order (a single writer); AUTOINCREMENT never reuses a value, so
-- IMAP UIDs stay valid across restarts and deletions.
CREATE TABLE copies (
    uid INTEGER PRIMARY KEY AUTOINCREMENT,
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    inbox TEXT NOT NULL,
    original_inbox TEXT NOT NULL,
    domain TEXT NOT NULL,
    received INTEGER NOT NULL,
    saved_by TEXT,
    read INTEGER,
    deleted INTEGER NOT NULL DEFAULT 0,
    answered INTEGER NOT NULL DEFAULT 0,
    flagged INTEGER NOT NULL DEFAULT 0,
    labels_json TEXT NOT NULL DEFAULT '[]',
    folder TEXT NOT NULL DEFAULT 'inbox',
    UNIQUE (message, n)
);
CREATE INDEX copies_inbox ON copies(inbox, uid);
CREATE INDEX copies_domain ON copies(domain, uid);
CREATE INDEX copies_saved_by ON copies(saved_by, uid) WHERE saved_by IS NOT NULL;
CREATE INDEX copies_received ON copies(received);

CREATE TABLE usage (
    account TEXT NOT NULL,
    month TEXT NOT NULL,
    ops INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, month)
);
