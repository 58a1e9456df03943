# -*- test-case-name: tests.test_store_roles -*-
"""
The store's interfaces: the only way protocols reach stored data.

The store is split by role, so that a caller names what it uses and mypy
(with mypy-zope) checks both sides against one typed signature: a backend
against every role, a caller against the roles it holds.

    - L{IAccountStore}: accounts, API keys, web sessions, logins;
    - L{IOwnershipStore}: owned addresses and custom domains, who owns an
      inbox, where an inbox's mail is routed (webhooks, websockets);
    - L{IMessageStore}: messages and their copies as the HTTP API and the
      web pages see them (ingest, listing, reading, deleting, starring,
      search);
    - L{IMailboxStore}: copies as IMAP and POP3 mailboxes see them (uids,
      flags, FETCH and SEARCH reads), with the uid guarantee every backend
      keeps;
    - L{IMaintenanceStore}: retention and usage counts;
    - L{IHealthStore}: readiness and load, for C{/readyz} and metrics;
    - L{IStoreLifecycle}: opening, starting and stopping;

L{IStore} extends them all: wiring code (C{capture.tap}, the console) and a
backend class (C{@implementer(IStore)}) use it; everything else takes the
roles it needs.

Every method that reads or writes returns a L{Deferred} and never blocks the
reactor.  Failures arrive as errbacks (or, for L{IStoreLifecycle}, are
raised) as the classes of L{capture.store.errors}: L{NotFound},
L{Conflict}, L{StoreFull}, L{StoreUnavailable} and their base
L{StoreError}.  No exception of a database driver (C{sqlite3.Error}) ever
reaches a caller: a backend maps them to L{StoreError}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from capture.access import Visibility
    from capture.store.model import (
        Account,
        AccountDeletion,
        AccountStats,
        ApiKeyInfo,
        Bodies,
        Copy,
        Domain,
        FetchedMessage,
        FlagState,
        InboxOwner,
        MailboxEntry,
        MailboxQuery,
        MetadataRow,
        OwnedAddress,
        PreparedMessage,
        Retention,
        StoreLoad,
    )


class IStoreLifecycle(Interface):
    """
    Opening, starting and stopping a store.

    Unlike the other roles these are synchronous, apart from L{stop}: they
    run before the reactor serves anyone, and fail by raising.
    """

    def open() -> None:
        """
        Create or migrate the stored data, synchronously, starting no
        thread (safe before C{twistd} daemonizes: a thread started before
        the fork would not survive it).  A second call does nothing.

        @raise capture.store.errors.SchemaTooNew: The data was written by
            a newer Capture; it is left untouched.
        @raise capture.store.errors.StoreUnavailable: The data cannot be
            opened or created (a corrupt or foreign file, missing
            permissions, a read-only disk): the message says which, in one
            line, naming the data directory.
        """

    def start() -> None:
        """
        L{open} if it was not called, then start what the store runs on
        (its writer, its read threads); only then do the other roles'
        methods work.

        @raise capture.store.errors.StoreUnavailable: As L{open}, or the
            writer's connection could not be made.
        """

    def stop() -> Deferred[None]:
        """
        Stop taking reads, write the API op counts still in memory, finish
        every write already queued, and close.  Safe on a store never
        started.

        @return: Deferred firing with L{None} once the writer has closed.
        """


class IAccountStore(Interface):
    """
    Accounts, their API keys and web sessions, and what a login stands for.
    """

    def createAccount(name: str, key: str | None = None) -> Deferred[tuple[Account, str]]:
        """
        Create an account with one API key, C{capturePrivate} off and the
        server's default message limit.

        @param key: The key to give it; a new random one when L{None}.
        @return: Deferred firing with C{(Account, key)}; the key is shown
            this once and stored only hashed.  Fails with L{Conflict} when
            the account exists already, or a chosen C{key} belongs to
            another account.
        """

    def getAccount(name: str) -> Deferred[Account]:
        """
        @return: Deferred firing with the L{Account}, or failing with
            L{NotFound}.
        """

    def listAccounts() -> Deferred[list[Account]]:
        """
        @return: Deferred firing with every L{Account}, by name.
        """

    def setAccountSettings(
        name: str, capturePrivate: bool | None = None, messageLimit: int | None = None
    ) -> Deferred[Account]:
        """
        Change an account's settings; L{None} leaves a setting as it is (a
        C{messageLimit} of 0 is no limit).

        @return: Deferred firing with the updated L{Account}; failing with
            L{NotFound} for no such account.
        """

    def createKey(account: str, label: str = "") -> Deferred[str]:
        """
        Add a new random API key to an account.

        @return: Deferred firing with the key (shown this once); failing
            with L{NotFound} for no such account.
        """

    def listKeys(account: str) -> Deferred[list[ApiKeyInfo]]:
        """
        @return: Deferred firing with the account's L{ApiKeyInfo}, live and
            revoked, oldest first; failing with L{NotFound} for no such
            account.
        """

    def revokeKey(account: str, prefix: str) -> Deferred[ApiKeyInfo]:
        """
        Revoke the one live key of C{account} named by C{prefix}: its
        stored prefix (at most 8 characters, as L{listKeys} shows it) or a
        prefix of that, or the whole key.

        @return: Deferred firing with its L{ApiKeyInfo}, C{revoked} set.
            Fails with L{NotFound} for no such account, an empty prefix, a
            prefix longer than the stored one that is not a whole key, or
            no live key matching; with L{Conflict} when several match.
        """

    def deleteAccount(name: str) -> Deferred[AccountDeletion]:
        """
        Delete an account and what is only its: its keys, its owned
        addresses and custom domains (released), the mail in them (but
        copies another account starred, and addresses another account
        reserved inside its domains), its star on any other copy, its
        usage counts (those still in memory too); mail it sent stays in
        its recipients' inboxes, no longer counted as sent by it (an
        account made later with the same name starts empty).  Its sessions
        end with it.  The deleted copies are reported to
        the event bus (L{capture.events.RemovedCopies}).

        @return: Deferred firing with an L{AccountDeletion}; failing with
            L{NotFound} for no such account.
        """

    def sessionGeneration(account: str, keyPrefix: str) -> Deferred[int | None]:
        """
        What a web session of C{account} signed in with the key starting
        C{keyPrefix} is checked against: the account's session generation
        while that key is live.

        @return: Deferred firing with the generation, or L{None} when the
            account or its live key with that prefix is gone.
        """

    def endSessions(account: str) -> Deferred[int]:
        """
        Sign C{account} out everywhere: raise its session generation, so
        every session cookie issued before is refused.

        @return: Deferred firing with the new generation; failing with
            L{NotFound} for no such account.
        """

    def accountForKey(key: str) -> Deferred[str | None]:
        """
        @return: Deferred firing with the name of the account the live key
            C{key} belongs to, or L{None} (unknown or revoked).
        """

    def accountAndOwner(key: str, inbox: str) -> Deferred[tuple[str | None, InboxOwner]]:
        """
        L{accountForKey} and L{IOwnershipStore.inboxOwner} in one read (the
        listing routes need both for every request).

        @return: Deferred firing with C{(account or None, InboxOwner)}.
        """

    def resolveLogin(username: str) -> Deferred[str | None]:
        """
        Which account a login name stands for, tried in this order: an
        account name (exactly, after stripping spaces), an address the
        account owns or that is in one of its private domains, a domain it
        owns or an address in one of its (public or private) domains.
        Addresses and domains are compared in their stored spelling
        (lower case, IDNA U-labels).

        @return: Deferred firing with the account name, or L{None}.
        """

    def checkLogin(username: str, key: str) -> Deferred[tuple[str | None, str | None]]:
        """
        L{accountForKey} and L{resolveLogin} in one read: every login (SMTP
        AUTH, POP3, IMAP) needs both, and one read thread round trip less
        per connection is measurable at a new connection per message.

        @param key: The key given; the empty string is no key (its account
            is then L{None}, with no lookup).
        @return: Deferred firing with C{(account of the key or None,
            account the user name stands for or None)}.
        """


class IOwnershipStore(Interface):
    """
    Owned (enhanced) addresses and custom domains: who owns an inbox, and
    where its mail is routed.

    Addresses and domains are stored lower-cased; every method lower-cases
    what it is given before comparing.
    """

    def reserveAddress(account: str, address: str) -> Deferred[OwnedAddress]:
        """
        Make C{address} owned by C{account}, with default settings.

        @return: Deferred firing with the new L{OwnedAddress}.  Fails with
            L{NotFound} for no such account, and with L{Conflict} when the
            address is reserved already, by any account, this one included
            (a private domain of another account is not checked here: the
            callers refuse it first; L{reserveAddresses} checks it).
        """

    def reserveAddresses(account: str, addresses: list[str]) -> Deferred[list[OwnedAddress]]:
        """
        Reserve several addresses at once, all or none; duplicates count
        once, and addresses C{account} owns already are kept as they are.

        @return: Deferred firing with the L{OwnedAddress} list, in the
            order given.  Fails with L{NotFound} for no such account, and
            with L{Conflict}, naming (comma-separated) the addresses
            another account owns, itself or by a private domain.
        """

    def releaseAddress(account: str, address: str) -> Deferred[None]:
        """
        Give up an owned address; its mail stays (public again, unless in
        a private domain).

        @return: Deferred firing with L{None}; failing with L{NotFound}
            when C{account} does not own it.
        """

    def updateAddress(
        account: str, address: str, settings: dict[str, Any]
    ) -> Deferred[OwnedAddress]:
        """
        Change an owned address's settings: C{info} (text), C{forward}
        and C{webhook} (text or L{None}), C{enablews} (bool); C{updated}
        becomes now.

        @return: Deferred firing with the updated L{OwnedAddress}.  Fails
            with L{NotFound} when C{account} does not own it, and with
            L{ValueError} (before any write) for a setting not named above.
        """

    def listAddresses(account: str) -> Deferred[list[OwnedAddress]]:
        """
        @return: Deferred firing with the account's L{OwnedAddress} list,
            by address (empty for an unknown account).
        """

    def addDomain(account: str, domain: str, isPrivate: bool = True) -> Deferred[Domain]:
        """
        Make C{domain} a custom domain of C{account}.

        @return: Deferred firing with the L{Domain}.  Fails with
            L{NotFound} for no such account, and with L{Conflict} when any
            account owns the domain already.
        """

    def removeDomain(account: str, domain: str) -> Deferred[None]:
        """
        Give a custom domain up; its mail stays, public from now on.

        @return: Deferred firing with L{None}; failing with L{NotFound}
            when C{account} does not own it.
        """

    def listDomains(account: str) -> Deferred[list[Domain]]:
        """
        @return: Deferred firing with the account's L{Domain} list, by
            domain (empty for an unknown account).
        """

    def domainOwner(domain: str) -> Deferred[str | None]:
        """
        @return: Deferred firing with the account owning custom domain
            C{domain} (private or public), or L{None}.
        """

    def setDomainPrivacy(account: str, domain: str, isPrivate: bool) -> Deferred[Domain]:
        """
        Make an owned domain private (its inboxes the owner's) or public.

        @return: Deferred firing with the updated L{Domain}; failing with
            L{NotFound} when C{account} does not own it.
        """

    def inboxOwner(address: str) -> Deferred[InboxOwner]:
        """
        Who owns an inbox: the account that reserved the address, else the
        owner of its domain when that domain is private (C{implicit}),
        else nobody (L{capture.store.model.PUBLIC}).

        @return: Deferred firing with the L{InboxOwner}.
        """

    def routes(inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        """
        The address record whose switches (C{webhook}, C{enablews},
        C{forward}) route the mail of each of C{inboxes}: the inbox's own
        owned address, else the catch-all (C{*@domain}) of its domain when
        the catch-all's account owns that domain (a catch-all left behind
        by a released domain routes nothing); one read for a batch.  An
        inbox with neither is not routed (reference 3: public addresses
        are not routable).

        @return: Deferred firing with a dict of inbox (lower-cased) to
            L{OwnedAddress}, with no key for an inbox not routed.
        """

    def webhookTargets(inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        """
        L{routes} narrowed to the records with a webhook URL.

        @return: Deferred firing with a dict of inbox to its
            L{OwnedAddress} (C{webhook} set and not empty).
        """


class IMessageStore(Interface):
    """
    Messages and their copies as the HTTP API, the web pages and the
    console see them.

    A copy's C{uid} is the one L{IMailboxStore} describes: listings are
    newest first by uid, and C{beforeUid} pages by it.
    """

    def addMessage(prepared: PreparedMessage) -> Deferred[list[Copy]]:
        """
        Store one message and one copy per recipient, durably.

        The message was parsed already, once, and every text readers need
        derived (L{capture.ingest.prepare}): the store writes what it is
        given.  The Deferred fires only after the message and all its
        copies are committed and synced, and the new copies' uids keep
        L{IMailboxStore}'s uid guarantee; a sender with C{capturePrivate}
        on stars every copy, and the sender's usage counter grows by one
        op.  The new copies go to the event bus (L{capture.events.NewCopies}).

        @param prepared: The L{capture.ingest.PreparedMessage}.
        @return: Deferred firing with the list of new L{Copy}, in the
            envelope's recipient order; failing with L{StoreFull} when the
            store has no room outside its reserve, or L{StoreError}.
        """

    def getCopy(copyId: str) -> Deferred[Copy]:
        """
        @return: Deferred firing with the L{Copy} whose Mailsac C{_id} is
            C{copyId}, or failing with L{NotFound} (also for a malformed
            id).
        """

    def listInbox(
        inbox: str,
        visibility: Visibility,
        limit: int = 50,
        beforeUid: int | None = None,
        until: int | None = None,
    ) -> Deferred[list[Copy]]:
        """
        Copies of one inbox, newest first.

        @param visibility: A L{capture.access.Visibility} from the access
            rule.
        @param beforeUid: Only copies with a smaller uid (paging).
        @param until: Only copies received at or before this time
            (milliseconds since the epoch; Mailsac's C{until}).
        @return: Deferred firing with at most C{limit} L{Copy}.
        """

    def listInboxJSON(
        inbox: str, visibility: Visibility, limit: int = 50, until: int | None = None
    ) -> Deferred[bytes]:
        """
        What L{listInbox} lists, as the UTF-8 text of a JSON array of
        Mailsac C{EmailMessage} objects, equal byte for byte to the JSON of
        L{capture.emailmessage.messageJSON} of each copy: the fast path of
        listings.  A backend joins text it stored (each copy's
        L{capture.emailmessage.listingHead}, kept true by every write that
        changes a field it shows, and its message's summary), without
        building JSON per request.

        @return: Deferred firing with the array's bytes (C{b"[]"} for none).
        """

    def countInbox(inbox: str, visibility: Visibility) -> Deferred[int]:
        """
        @return: Deferred firing with how many copies a listing would show,
            without a limit.
        """

    def getRaw(copy: Copy) -> Deferred[bytes]:
        """
        @return: Deferred firing with the raw bytes of the copy's message,
            or failing with L{NotFound} when the message is gone.
        """

    def getBodies(copy: Copy) -> Deferred[Bodies]:
        """
        @return: Deferred firing with the L{Bodies} of the copy's message
            (parsed at ingest), or failing with L{NotFound} when the
            message is gone.
        """

    def deleteCopy(copy: Copy) -> Deferred[None]:
        """
        Delete one copy (the message goes with its last copy); reported to
        the event bus (L{capture.events.RemovedCopies}).

        @return: Deferred firing with L{None}; failing with L{NotFound}
            when the copy is gone already.
        """

    def setCopyState(
        copy: Copy,
        read: bool | None = None,
        labels: tuple[str, ...] | None = None,
        folder: str | None = None,
    ) -> Deferred[Copy]:
        """
        Change a copy's read flag, labels or folder; L{None} leaves each as
        it is.  Subscribers are not told (IMAP sees the change at its
        next read of the flags).

        @return: Deferred firing with the updated L{Copy}; failing with
            L{NotFound} when the copy is gone.
        """

    def purgeInbox(inbox: str) -> Deferred[int]:
        """
        Delete every unstarred copy of an inbox (Mailsac's purge keeps
        starred mail); reported to the event bus
        (L{capture.events.RemovedCopies}).

        @return: Deferred firing with how many went.
        """

    def listDomain(
        domain: str, account: str, visibility: Visibility, limit: int = 20,
        until: int | None = None,
    ) -> Deferred[list[Copy]]:
        """
        Copies filed in C{domain}, newest first, as C{account} (the
        domain's owner) may list them: never the inbox of an address
        another account reserved inside the domain.

        @return: Deferred firing with at most C{limit} L{Copy}.
        """

    def countDomain(domain: str, account: str, visibility: Visibility) -> Deferred[int]:
        """
        How many copies L{listDomain} could list, without a limit.

        @return: Deferred firing with an L{int}.
        """

    def purgeDomain(domain: str, account: str) -> Deferred[int]:
        """
        Delete every unstarred copy filed in C{domain}, except in addresses
        another account reserved there; reported to
        the event bus (L{capture.events.RemovedCopies}).

        @return: Deferred firing with how many went.
        """

    def listAccountInbox(
        account: str, limit: int = 20, skip: int = 0, since: int | None = None,
        beforeUid: int | None = None,
    ) -> Deferred[tuple[list[Copy], int]]:
        """
        The account's unified inbox: copies in the inboxes it owns (its
        addresses and private domains) and the copies it starred, newest
        first.

        @param skip: How many of the newest to pass over (an offset).
        @param since: Only copies received at or after this time (ms).
        @param beforeUid: Only copies with a smaller uid (a cursor: the
            last uid of the page before; cheaper than C{skip} deep down).
        @return: Deferred firing with C{(copies, unread)}, C{unread}
            counting the unread copies of the whole unified inbox (neither
            C{since} nor C{beforeUid} narrow it).
        """

    def searchAccount(
        account: str,
        subject: str | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        read: bool | None = None,
        anyOf: str | None = None,
        limit: int = 100,
    ) -> Deferred[list[Copy]]:
        """
        Search the account's unified inbox: every condition given must hold
        (C{subject}, C{sender}, C{recipient}: substrings, case-insensitive
        for ASCII; C{read}), and C{anyOf} matches subject, sender or
        recipients.

        @return: Deferred firing with at most C{limit} L{Copy}, newest
            first.
        """

    def searchAccountWindow(
        account: str, anyOf: str, limit: int = 100, beforeUid: int | None = None,
        scan: int = 10_000,
    ) -> Deferred[tuple[list[Copy], int | None]]:
        """
        L{searchAccount}'s C{anyOf} search with its work bounded, as
        L{searchInbox}: at most C{scan} of the account's copies (the newest
        below C{beforeUid}) are examined per call.

        @return: Deferred firing with C{(copies, nextBefore)}: at most
            C{limit} matching L{Copy}, newest first, and the C{beforeUid}
            to search older copies with, or L{None} when nothing older is
            left.
        """

    def searchInbox(
        inbox: str,
        visibility: Visibility,
        words: list[str],
        limit: int = 50,
        beforeUid: int | None = None,
        scan: int = 10_000,
    ) -> Deferred[tuple[list[Copy], int | None]]:
        """
        Copies of one inbox containing every one of C{words} (substrings,
        case-insensitive for ASCII) in the subject, sender, recipients or
        text body, newest first.

        The work is bounded: at most C{scan} copies (the newest below
        C{beforeUid}) are examined per call, however large the inbox, so a
        rare word in a huge inbox costs one bounded read and the caller
        continues from the returned cursor.

        @param visibility: A L{capture.access.Visibility} from the access
            rule.
        @param words: Strings, each required (none: every copy matches).
        @return: Deferred firing with C{(copies, nextBefore)}: at most
            C{limit} matching L{Copy}, and the C{beforeUid} to search older
            copies with, or L{None} when nothing older is left.
        """

    def accountStats(account: str) -> Deferred[AccountStats]:
        """
        Counts for Mailsac's C{/me/stats} (C{nonOwnedInboxes}: at most
        1,000, sorted).

        @return: Deferred firing with an L{AccountStats}.
        """

    def listStarred(account: str, limit: int = 50) -> Deferred[list[Copy]]:
        """
        Copies starred by C{account}, newest first, wherever they are.

        @return: Deferred firing with at most C{limit} L{Copy}.
        """

    def setStarred(copy: Copy, account: str | None) -> Deferred[Copy]:
        """
        Star the copy for C{account} (taking it from whoever starred it
        before), or unstar it with L{None}.

        @return: Deferred firing with the updated L{Copy}; failing with
            L{NotFound} when the copy is gone.
        """


class IMailboxStore(Interface):
    """
    Copies as IMAP and POP3 mailboxes see them.

    B{The uid guarantee}, which every backend keeps and IMAP relies on
    (RFC 3501 2.3.1.1; a client that has seen a uid never looks below it
    for new mail):

        1. Uids are strictly increasing in commit order, across every
           writer of the store (threads, processes, nodes sharing one
           database): once any reader has seen a copy with uid C{u} in a
           mailbox, no copy that reader or any other sees later in that
           mailbox has a uid below C{u} unless it was there before.  A
           backend that assigns uids before commit (a sequence read by
           concurrent transactions) must therefore order the commits, or
           hide a copy until every smaller uid is committed or abandoned.
        2. A uid is never given to a second copy while L{uidValidity}
           stands, whatever is deleted, across restarts; uids of a mailbox
           ascend with gaps (a mailbox is a query over the store-wide
           sequence), which IMAP allows.
        3. L{nextUid} (IMAP's UIDNEXT) is true: every copy committed after
           it was read has that uid or a larger one, and it never goes
           back, even after the newest copy is deleted.

    The same uids are the HTTP API's paging cursors (C{beforeUid}).
    """

    uidValidity: int = Attribute(
        "int: the IMAP UIDVALIDITY of every mailbox of this store, set by "
        "L{IStoreLifecycle.open}; it changes only if the copy sequence is "
        "ever reset, and then every uid seen before is void."
    )

    def readerInboxes(account: str) -> Deferred[list[str]]:
        """
        The inboxes an account's IMAP view shows as folders: every address
        it owns, and every address of its private domains that has mail
        (never one another account reserved there), sorted.

        @return: Deferred firing with a list of addresses.
        """

    def listMailbox(inbox: str, visibility: Visibility) -> Deferred[list[MailboxEntry]]:
        """
        Every copy of one inbox that C{visibility} shows, oldest first, as
        L{MailboxEntry} (what a POP3 session numbers).

        @return: Deferred firing with a list of L{MailboxEntry}.
        """

    def listSent(account: str) -> Deferred[list[MailboxEntry]]:
        """
        The messages C{account} sent through Capture (its mail client's
        C{INBOX}), oldest first, as L{MailboxEntry}: one copy per message,
        the one with the lowest uid among those the account may read, flag
        and delete (the same mailbox IMAP shows as the account's C{INBOX},
        L{MailboxQuery} C{sentBy}).

        @return: Deferred firing with a list of L{MailboxEntry}.
        """

    def getEntryRaw(entry: MailboxEntry) -> Deferred[bytes]:
        """
        The raw bytes of a L{MailboxEntry}'s message, read when asked for
        (a reader fetches one message at a time).

        @return: Deferred firing with L{bytes}, or failing with
            L{NotFound} when the message is gone.
        """

    def mailboxFlags(query: MailboxQuery) -> Deferred[list[FlagState]]:
        """
        The copies of a mailbox with their flags, by ascending uid (IMAP's
        sequence numbers).

        @param query: A L{capture.store.model.MailboxQuery}.
        @return: Deferred firing with a list of L{FlagState}.
        """

    def nextUid() -> Deferred[int]:
        """
        A uid no copy has had and every new copy will have or exceed (the
        store-wide sequence's next value): IMAP's UIDNEXT of every mailbox,
        kept true as the class's uid guarantee says.

        @return: Deferred firing with an L{int}.
        """

    def fetchMessages(
        uids: list[int],
        envelope: bool = False,
        structure: bool = False,
        raw: bool = False,
        headersOnly: bool = False,
        part: bool = False,
    ) -> Deferred[dict[int, FetchedMessage]]:
        """
        What a FETCH needs of many copies, in one read, with each copy's
        flags as stored now.

        @param uids: The copies' uids (the caller has checked they are in a
            mailbox its viewer may read).
        @param envelope: Read the stored ENVELOPE text.
        @param structure: Read the stored BODYSTRUCTURE text.
        @param raw: Read the raw bytes; with C{headersOnly}, only the header
            block.
        @param part: Parse the stored part tree into a L{capture.mime.Part}.
        @return: Deferred firing with a dict of uid to L{FetchedMessage}
            (copies deleted meanwhile are missing).
        """

    def fetchMetadata(
        uids: list[int], envelope: bool = False, structure: bool = False
    ) -> Deferred[list[MetadataRow]]:
        """
        What a FETCH that shows no message text needs of many copies (UID,
        FLAGS, RFC822.SIZE, INTERNALDATE, ENVELOPE, BODYSTRUCTURE), in one
        read, as plain rows: a client syncing a folder asks this of every
        message, and an object per message cost more than the read.

        @param uids: The copies' uids, ascending (the caller has checked
            they are in a mailbox its viewer may read).
        @return: Deferred firing with a list of
            L{capture.store.model.MetadataRow}, ascending by uid (copies
            deleted meanwhile are missing).
        """

    def searchMessages(
        uids: list[int],
        match: Callable[[FlagState, FetchedMessage, str | None, str | None], bool],
        bodies: bool = False,
    ) -> Deferred[list[int]]:
        """
        Which of C{uids} satisfy C{match}, tested in one read on a read
        thread (never the reactor).

        @param match: A callable taking a L{FlagState}, a L{FetchedMessage}
            (with C{raw} when C{bodies}, else only the header block) and the
            decoded text and HTML bodies (L{None} unless C{bodies}),
            returning a bool.
        @return: Deferred firing with the list of matching uids, ascending
            (copies deleted meanwhile are missing).
        """

    def setFlags(states: list[FlagState]) -> Deferred[None]:
        """
        Write the IMAP flags of several copies at once, in one write
        (C{read}, C{deleted}, C{answered}, C{flagged}, C{labels}): the same
        facts the HTTP API shows.  Copies deleted meanwhile are skipped.
        Subscribers are not told.

        @param states: A list of L{FlagState}.
        @return: Deferred firing with L{None}.
        """

    def deleteCopies(uids: list[int]) -> Deferred[list[int]]:
        """
        Delete several copies in one write (messages go with their last
        copy); uids of copies gone already are skipped.  What was deleted
        is reported to the event bus (L{capture.events.RemovedCopies}).

        @return: Deferred firing with the uids that were deleted,
            ascending.
        """


class IMaintenanceStore(Interface):
    """
    Retention, and the API ops counted per account and month.
    """

    def enforceRetention(retention: Retention, now: int) -> Deferred[int]:
        """
        Recycle what the L{Retention} limits no longer allow, in one
        bounded write (at most a batch of copies per limit and inbox or
        account): public copies older than C{publicMaxAge}; the oldest
        unstarred copies of public inboxes over C{publicInboxLimit}; the
        oldest unstarred copies in an account's owned inboxes while it
        stores more than its message limit (starred copies count toward
        the limit of the account that starred them).  Starred copies are
        never recycled.  The inbox and account limits are checked only for
        inboxes and accounts written since the last pass (all of them on
        the first pass after start); what had more excess than a batch is
        checked again by the next pass, and after a failed pass the next
        one checks all that this one would have.  The removed copies are
        reported to the event bus (L{capture.events.RemovedCopies}), as
        any deletion.

        @param now: Milliseconds since the epoch.
        @return: Deferred firing with the number of copies removed (0 when
            nothing is left to do).
        """

    def usage(account: str, month: str) -> Deferred[int]:
        """
        @param month: C{"YYYY-MM"} (UTC).
        @return: Deferred firing with the number of ops counted, those
            L{countOp} holds in memory included (0 for an unknown account
            or month).
        """

    def countOp(account: str) -> None:
        """
        Count one op (an API call) for C{account} this month (UTC).  Ops
        are summed in memory and written about once a second, in one write
        (a write per call would put the writer, and its sync, on every
        read), and on L{IStoreLifecycle.stop}; L{usage} includes them
        meanwhile.
        """


class IHealthStore(Interface):
    """
    What readiness checks and metrics ask of a store.
    """

    def ping() -> Deferred[None]:
        """
        A trivial read, through the same path every read takes: readiness
        checks call it with a deadline.

        @return: Deferred firing with L{None}; failing with L{StoreError}
            at once when the store is not running or its writer has
            stopped, and with L{StoreError} when the read fails.
        """

    def load() -> StoreLoad:
        """
        @return: The L{StoreLoad} now (queue depths, read at scrape time);
            zeros before L{IStoreLifecycle.start}.
        """


class IStore(
    IStoreLifecycle,
    IAccountStore,
    IOwnershipStore,
    IMessageStore,
    IMailboxStore,
    IMaintenanceStore,
    IHealthStore,
):
    """
    Every role of a store: what a backend provides, and what wiring code
    (C{capture.tap}, the console) holds.  Anything else takes the roles it
    uses.

    Every committed change to copies is published, after the commit and
    before the method's Deferred fires, to the L{capture.events.IEventBus}
    the store was built with: new copies (L{IMessageStore.addMessage}),
    removed ones (deletes, purges, expunges, retention, account deletion)
    and changed ones (L{IMailboxStore.setFlags},
    L{IMessageStore.setCopyState}, L{IMessageStore.setStarred}, the stars
    an account deletion drops).  Readers subscribe to the bus, not the
    store.
    """
