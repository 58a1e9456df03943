# -*- test-case-name: tests.test_store -*-
"""
Value objects that cross the store's interface.

They are plain immutable records: protocols read them, never the database.
"""

from __future__ import annotations

from typing import Any

import attrs

from capture.ids import copyId
from capture.mime import Attachment, MailAddress, ParsedMessage


@attrs.frozen
class Account:
    """
    An account: a user name (Mailsac's C{_id}) with API keys and settings.

    @ivar messageLimit: How many copies the account may keep in its owned
        inboxes and starred mail before the oldest are recycled; L{None}
        for the server's default.
    """

    name: str
    created: int
    capturePrivate: bool
    messageLimit: int | None

    def effectiveLimit(self, default: int) -> int:
        """
        The limit retention applies to this account: its own, else the
        server's C{default}; 0 is no limit.
        """
        return default if self.messageLimit is None else self.messageLimit


@attrs.frozen
class ApiKeyInfo:
    """
    What may be shown of an API key after its creation: never the key.
    """

    account: str
    prefix: str
    label: str
    created: int
    revoked: int | None


@attrs.frozen
class OwnedAddress:
    """
    An address reserved by an account (Mailsac's enhanced address).
    """

    address: str
    account: str
    created: int
    updated: int
    info: str = ""
    forward: str | None = None
    webhook: str | None = None
    enablews: bool = False


@attrs.frozen
class Domain:
    """
    A custom domain owned by an account; private unless made public.
    """

    domain: str
    account: str
    isPrivate: bool
    created: int


@attrs.frozen
class AccountStats:
    """
    What C{/me/stats} reports about an account's stored mail.

    @ivar storedMessages: Copies in its owned addresses and private domains,
        plus copies it starred elsewhere (what its C{messageLimit} covers).
    @ivar inboxBytes: The size of those copies' messages.
    @ivar nonOwnedInboxes: Inboxes it does not own where it starred mail.
    """

    starredMessages: int
    storedMessages: int
    inboxBytes: int
    nonOwnedInboxes: tuple[str, ...]


@attrs.frozen
class InboxOwner:
    """
    Who owns an inbox, if anyone.

    @ivar account: The owning account, or L{None} for a public inbox.
    @ivar implicit: True when the owner holds the inbox through a private
        domain rather than by reserving the address.
    """

    account: str | None
    implicit: bool = False


PUBLIC = InboxOwner(None)


@attrs.frozen
class Recipient:
    """
    One RCPT of a transaction.

    @ivar inbox: The inbox the copy is filed in (plus-address removed).
    @ivar original: The address exactly as the client gave it.
    """

    inbox: str
    original: str


@attrs.frozen
class Envelope:
    """
    Everything SMTP knows about a transaction besides the message bytes.

    @ivar account: The authenticated sender, or L{None} for anonymous mail.
    @ivar received: Milliseconds since the epoch.
    """

    queueId: str
    mailFrom: str
    recipients: tuple[Recipient, ...]
    account: str | None
    helo: str
    ip: str
    via: str
    tls: bool
    received: int


@attrs.frozen
class MessageInfo:
    """
    The facts of a stored message that listings show (no bodies, no raw).

    @ivar rowid: The store's own number for the message; opaque to callers
        except as an argument to the store's methods.
    """

    rowid: int
    queueId: str
    received: int
    account: str | None
    mailFrom: str
    size: int
    subject: str
    fromAddresses: tuple[MailAddress, ...]
    to: tuple[MailAddress, ...]
    cc: tuple[MailAddress, ...]
    bcc: tuple[MailAddress, ...]
    date: str | None
    messageId: str | None
    links: tuple[str, ...]
    attachments: tuple[Attachment, ...]
    ip: str
    via: str
    tls: bool


@attrs.frozen
class Copy:
    """
    One recipient's copy of a message (Mailsac's message object).

    @ivar uid: Position in the store-wide sequence of copies, assigned in
        commit order; IMAP uses it as the UID (the guarantee every backend
        keeps is L{capture.store.interface.IMailboxStore}'s).
    """

    uid: int
    n: int
    inbox: str
    originalInbox: str
    savedBy: str | None
    read: bool | None
    deleted: bool
    answered: bool
    flagged: bool
    labels: tuple[str, ...]
    folder: str
    message: MessageInfo

    @property
    def id(self) -> str:
        """
        The Mailsac C{_id}: C{<queueId>-<n>}.
        """
        return copyId(self.message.queueId, self.n)

    @property
    def domain(self) -> str:
        return self.inbox.rpartition("@")[2]


@attrs.frozen
class RemovedCopy:
    """
    What a deletion reports of each copy it removed: enough for IMAP to
    expunge it (C{uid}) and for a live page to drop its row (C{id}), sent
    only to those who could list it (C{inbox}, C{savedBy}), with no read
    after the commit.
    """

    uid: int
    id: str
    inbox: str
    savedBy: str | None

    @classmethod
    def of(cls, copy: Copy) -> RemovedCopy:
        return cls(copy.uid, copy.id, copy.inbox, copy.savedBy)

    @property
    def domain(self) -> str:
        return self.inbox.rpartition("@")[2]


@attrs.frozen
class MailboxEntry:
    """
    One copy as a mailbox reader (POP3) numbers it: enough to size, name
    and fetch it, and nothing of its listing facts, so a session over a
    large mailbox holds little.

    @ivar uid: The copy's uid (its place in the store-wide sequence).
    @ivar copyId: The copy's Mailsac C{_id}.
    @ivar message: The row id of its message (L{MessageInfo.rowid}).
    @ivar size: The size of the stored message in octets.
    """

    uid: int
    copyId: str
    message: int
    size: int


@attrs.frozen
class Bodies:
    """
    The decoded bodies and headers of a message, parsed at ingest.
    """

    text: str | None
    html: str | None
    headers: tuple[tuple[str, str], ...]
    structure: dict[str, object]


@attrs.frozen
class AccountDeletion:
    """
    What deleting an account removed.

    @ivar keys: Its API keys (live or revoked).
    @ivar addresses: The addresses it owned, released.
    @ivar domains: The custom domains it owned, released.
    @ivar copiesDeleted: Copies deleted from its owned addresses and
        domains (other accounts' starred copies there are kept).
    @ivar starsDropped: Copies elsewhere it had starred, starred no more.
    """

    keys: int
    addresses: tuple[str, ...]
    domains: tuple[str, ...]
    copiesDeleted: int
    starsDropped: int


# Copies an account keeps (owned inboxes and starred) unless it has a
# limit of its own: --message-limit's default.
DEFAULT_MESSAGE_LIMIT = 100_000


@attrs.frozen
class Retention:
    """
    The limits background retention enforces.

    @ivar publicInboxLimit: Copies kept per public inbox (0: no limit).
    @ivar publicMaxAge: Seconds public mail is kept (0: no limit).
    @ivar messageLimit: Default per-account limit on copies in owned inboxes
        and starred mail (0: no limit); an account's own setting wins.
    """

    publicInboxLimit: int = 500
    publicMaxAge: int = 7 * 86400
    messageLimit: int = DEFAULT_MESSAGE_LIMIT


@attrs.frozen
class StoreLoad:
    """
    How much work a store has waiting, as metrics show it.

    @ivar writesQueued: Write operations queued for the writer, not yet
        taken into a batch.
    @ivar readsPending: Reads handed to the read threads and not answered
        yet (running or waiting for a thread).
    """

    writesQueued: int
    readsPending: int


@attrs.frozen
class MailboxQuery:
    """
    Which copies make one IMAP or POP3 mailbox.

    @ivar inbox: The copies of this inbox that C{visibility} shows; or,
        when L{None},
    @ivar sentBy: the mail this account sent through Capture, one copy
        per message (the one with the lowest uid among those the account
        may read, flag and delete: in public inboxes, unless another
        account starred it, or in its own).
    """

    inbox: str | None
    visibility: Any = None
    sentBy: str | None = None


@attrs.frozen
class FlagState:
    """
    A copy's IMAP flags as the store keeps them: C{\\Seen} is Mailsac's
    C{read}, keywords are its labels.
    """

    uid: int
    read: bool
    deleted: bool
    answered: bool
    flagged: bool
    labels: tuple[str, ...]


# What a FETCH of metadata alone needs of one copy, as a plain row (a
# whole-mailbox FETCH builds no object per message): uid, flag bits
# (FLAG_READ | FLAG_DELETED | FLAG_ANSWERED | FLAG_FLAGGED), labels as JSON
# text, size, received (ms), and the ENVELOPE and BODYSTRUCTURE texts as
# ASCII bytes, or None when not asked for.
MetadataRow = tuple[int, int, str, int, int, "bytes | None", "bytes | None"]
FLAG_READ = 1
FLAG_DELETED = 2
FLAG_ANSWERED = 4
FLAG_FLAGGED = 8


@attrs.frozen
class FetchedMessage:
    """
    What an IMAP FETCH may need of one copy, read in one go for a whole
    message set.  Fields not asked for are L{None}.

    @ivar envelope: The ready ENVELOPE text.
    @ivar structure: The ready BODYSTRUCTURE text.
    @ivar headerSize: Octets of the top-level header block, blank line
        included.
    @ivar raw: The whole message, or only its header block when only that
        was asked for.
    @ivar part: The part tree (L{capture.mime.Part}), when asked for.
    @ivar flags: The copy's L{FlagState} as stored now.
    """

    uid: int
    size: int
    received: int
    headerSize: int
    envelope: str | None = None
    structure: str | None = None
    raw: bytes | None = None
    part: Any = None
    flags: FlagState | None = None


@attrs.frozen
class PreparedCopy:
    """
    One recipient's copy, named as it is filed.

    @ivar n: The copy's number within its message (the C{-n} of its
        Mailsac C{_id}).
    @ivar inbox: The canonical inbox (lower case, plus-address removed).
    @ivar original: The recipient exactly as the client gave it.
    @ivar domain: The inbox's domain.
    @ivar listing: The copy's L{capture.emailmessage.listingHead} as filed
        (unread, unlabelled, in C{inbox}, saved by nobody: the writer makes
        it again for a sender whose account keeps its mail private).
    """

    n: int
    inbox: str
    original: str
    domain: str
    listing: str


@attrs.frozen
class PreparedMessage:
    """
    A message parsed once (L{capture.ingest.prepare}), with everything a
    backend stores for it: a neutral value, so that the store persists it
    without importing what made it.

    @ivar parsed: The parsed facts (L{capture.ingest.fallbackParse}
        if parsing failed).
    @ivar raw: The message bytes as SMTP handed them over (the session's
        own buffer: no copy is made here, see L{capture.smtp.IngestBudget}).
    @ivar copies: One per recipient, in RCPT order.
    @ivar summary: Mailsac's message-level C{EmailMessage} fields as JSON
        text (L{capture.emailmessage.summaryJSON}).
    @ivar imapEnvelope: IMAP's ENVELOPE of the message.
    @ivar imapStructure: IMAP's BODYSTRUCTURE of the message.
    @ivar headerSize: Octets of the top-level header block (where the body
        starts), for C{BODY[HEADER]} and C{BODY[TEXT]} without a parse.
    @ivar headersJSON: The top-level headers as a JSON array of
        C{[name, value]}.
    @ivar structureJSON: The part tree as JSON (L{Part.toJSON}).
    @ivar month: C{YYYY-MM} of C{received}, the sender's usage month.
    """

    envelope: Envelope
    parsed: ParsedMessage
    raw: bytes
    copies: tuple[PreparedCopy, ...]
    summary: str
    imapEnvelope: str
    imapStructure: str
    headerSize: int
    headersJSON: str
    structureJSON: str
    month: str
