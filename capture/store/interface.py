"""
The store's interface: the only way protocols reach stored data.

Every method returns a L{Deferred} and never blocks the reactor.  A backend
(SQLite now, PostgreSQL later) implements L{IStore}; protocols hold an
L{IStore} and never see SQL.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IStore(Interface):
    """
    Accounts, owned addresses and domains, messages and their copies.

    Failures arrive as errbacks: L{capture.store.model.NotFound},
    L{capture.store.model.Conflict}, L{capture.store.model.StoreFull} and
    L{capture.store.model.StoreError}.

    Every committed change to copies is published, after the commit and
    before the method's Deferred fires, to the L{capture.events.IEventBus}
    the store was built with: new copies (L{addMessage}), removed ones
    (deletes, purges, expunges, retention, account deletion) and changed
    ones (L{setFlags}, L{setCopyState}, L{setStarred}, the stars an
    account deletion drops).  Readers subscribe to the bus, not the store.
    """

    uidValidity = Attribute(
        "int: the IMAP UIDVALIDITY of every mailbox of this store; it "
        "changes only if the copy sequence is ever reset."
    )

    def open() -> None:
        """
        Create or migrate the stored data, synchronously, starting no
        thread (safe before C{twistd} daemonizes).

        @raise capture.store.model.SchemaTooNew: The data was written by a
            newer Capture.
        """

    def start() -> None:
        """
        L{open} if needed, then start what the store runs on (threads,
        connections).
        """

    def stop():
        """
        Finish pending writes and close.  @rtype: L{Deferred}
        """

    # Accounts and keys

    def createAccount(name, key=None):
        """
        Create an account with one API key.

        @param key: The key to give it; a new random one when L{None}.
        @return: Deferred firing with C{(Account, key)}; the key is shown
            this once and stored only hashed.
        """

    def getAccount(name):
        """
        @return: Deferred firing with the L{Account}, or failing with
            L{NotFound}.
        """

    def listAccounts():
        """
        @return: Deferred firing with a list of L{Account}, by name.
        """

    def setAccountSettings(
        name, capturePrivate=None, messageLimit=None
    ):
        """
        Change an account's settings; L{None} leaves a setting as it is.

        @return: Deferred firing with the updated L{Account}.
        """

    def createKey(account, label=""):
        """
        Add an API key to an account.  @return: Deferred firing with the key.
        """

    def listKeys(account):
        """
        @return: Deferred firing with a list of L{ApiKeyInfo}.
        """

    def revokeKey(account, prefix):
        """
        Revoke the one live key of C{account} whose text starts with
        C{prefix}.  Fails with L{NotFound} or, for an ambiguous prefix,
        L{Conflict}.  @return: Deferred firing with its L{ApiKeyInfo}.
        """

    def deleteAccount(name):
        """
        Delete an account and what is only its: its keys, its owned
        addresses and custom domains (released), the mail in them (but
        copies another account starred), its star on any other copy, its
        usage counts; mail it sent stays in its recipients' inboxes, no
        longer counted as sent by it (an account made later with the same
        name starts empty).  Its sessions end with it.

        @return: Deferred firing with an L{AccountDeletion}; failing with
            L{NotFound} for no such account.
        """

    def sessionGeneration(account, keyPrefix):
        """
        What a web session of C{account} signed in with the key starting
        C{keyPrefix} is checked against: the account's session generation
        while that key is live.

        @return: Deferred firing with the generation, or L{None} when the
            account or its live key with that prefix is gone.
        """

    def endSessions(account):
        """
        Sign C{account} out everywhere: raise its session generation, so
        every session cookie issued before is refused.

        @return: Deferred firing with the new generation; failing with
            L{NotFound} for no such account.
        """

    def accountForKey(key):
        """
        @return: Deferred firing with the name of the account the live key
            C{key} belongs to, or L{None}.
        """

    def accountAndOwner(key, inbox):
        """
        L{accountForKey} and L{inboxOwner} in one read (the listing routes
        need both for every request).
        @return: Deferred firing with C{(account or None, InboxOwner)}.
        """

    def resolveLogin(username):
        """
        Which account a login name stands for: an account name, an address
        or domain the account owns, or an address in one of its domains.

        @return: Deferred firing with the account name, or L{None}.
        """

    def checkLogin(username, key):
        """
        L{accountForKey} and L{resolveLogin} in one read: every login (SMTP
        AUTH, POP3, IMAP) needs both, and one read thread round trip less
        per connection is measurable at a new connection per message.

        @return: Deferred firing with C{(account of the key or None,
            account the user name stands for or None)}.
        """

    # Owned addresses and domains

    def reserveAddress(account, address):
        """
        Make C{address} owned by C{account}; L{Conflict} if another account
        owns it.  @return: Deferred firing with the L{OwnedAddress}.
        """

    def releaseAddress(account, address):
        """
        Give up an owned address.  @return: Deferred firing with L{None}.
        """

    def updateAddress(account, address, settings):
        """
        Change an owned address's settings (C{info}, C{forward},
        C{webhook}, C{enablews}); L{NotFound} if the account does not own
        it.  @return: Deferred firing with the updated L{OwnedAddress}.
        """

    def listAddresses(account):
        """
        @return: Deferred firing with the account's L{OwnedAddress} list.
        """

    def addDomain(account, domain, isPrivate=True):
        """
        Make C{domain} a custom domain of C{account}.
        @return: Deferred firing with the L{Domain}.
        """

    def removeDomain(account, domain):
        """
        @return: Deferred firing with L{None}.
        """

    def listDomains(account):
        """
        @return: Deferred firing with the account's L{Domain} list.
        """

    def domainOwner(domain):
        """
        @return: Deferred firing with the account owning custom domain
            C{domain}, or L{None}.
        """

    def setDomainPrivacy(account, domain, isPrivate):
        """
        Make an owned domain private (its inboxes the owner's) or public;
        L{NotFound} if C{account} does not own it.
        @return: Deferred firing with the updated L{Domain}.
        """

    def reserveAddresses(account, addresses):
        """
        Reserve several addresses at once, all or none: L{Conflict} naming
        the addresses another account owns (itself or by a private domain).  Addresses C{account} owns
        already are kept as they are.
        @return: Deferred firing with the L{OwnedAddress} list, in order.
        """

    def inboxOwner(address):
        """
        @return: Deferred firing with the L{InboxOwner} of an inbox.
        """

    def routes(inboxes):
        """
        The address record whose switches (C{webhook}, C{enablews},
        C{forward}) route the mail of each of C{inboxes}: the inbox's own
        owned address, else the catch-all (C{*@domain}) of its domain when
        the catch-all's account owns that domain; one read for a batch.
        An inbox with neither is not routed (reference 3: public addresses
        are not routable).

        @return: Deferred firing with a dict of inbox to L{OwnedAddress}.
        """

    def webhookTargets(inboxes):
        """
        L{routes} narrowed to the records with a webhook URL.

        @return: Deferred firing with a dict of inbox to its
            L{OwnedAddress} (C{webhook} set and not empty).
        """

    # Messages

    def addMessage(envelope, raw):
        """
        Store one message and one copy per recipient, durably.

        The message is parsed here, once.  The Deferred fires only after
        the message and all its copies are committed and synced; a
        sender with C{capturePrivate} on stars every copy, and the
        sender's usage counter grows by one op.

        @param envelope: The L{Envelope}.
        @param raw: The message bytes, C{Received:} line included.
        @return: Deferred firing with the list of new L{Copy}.
        """

    def getCopy(copyId):
        """
        @return: Deferred firing with the L{Copy} whose Mailsac C{_id} is
            C{copyId}, or failing with L{NotFound}.
        """

    def listInbox(
        inbox, visibility, limit=50, beforeUid=None, until=None
    ):
        """
        Copies of one inbox, newest first.

        @param visibility: A L{capture.access.Visibility} from the access
            rule.
        @param beforeUid: Only copies with a smaller uid (paging).
        @param until: Only copies received at or before this time
            (milliseconds since the epoch; Mailsac's C{until}).
        @return: Deferred firing with a list of L{Copy}.
        """

    def listInboxJSON(inbox, visibility, limit=50, until=None):
        """
        What L{listInbox} lists, as the UTF-8 JSON array of the copies'
        C{EmailMessage} objects (each equal to
        L{capture.web.messages.messageJSON} of the copy), built from the
        stored summaries without making a L{Copy}: the fast path of
        listings.
        @return: Deferred firing with L{bytes}.
        """

    def countInbox(inbox, visibility):
        """
        @return: Deferred firing with how many copies a listing would show.
        """

    def getRaw(copy):
        """
        @return: Deferred firing with the raw bytes of the copy's message.
        """

    def listMailbox(inbox, visibility):
        """
        Every copy of one inbox that C{visibility} shows, oldest first, as
        L{MailboxEntry} (what a POP3 session numbers).
        @return: Deferred firing with a list of L{MailboxEntry}.
        """

    def listSent(account):
        """
        The messages C{account} sent through Capture (its mail client's
        C{INBOX}), oldest first, as L{MailboxEntry}: one copy per message,
        one the account may read, flag and delete (the same mailbox IMAP
        shows as the account's C{INBOX}, L{MailboxQuery} C{sentBy}).
        @return: Deferred firing with a list of L{MailboxEntry}.
        """

    def getEntryRaw(entry):
        """
        The raw bytes of a L{MailboxEntry}'s message, read when asked for
        (a reader fetches one message at a time).
        @return: Deferred firing with L{bytes}, or failing with
            L{NotFound} when the message is gone.
        """

    def getBodies(copy):
        """
        @return: Deferred firing with the L{Bodies} of the copy's message.
        """

    def deleteCopy(copy):
        """
        Delete one copy (the message goes with its last copy).
        @return: Deferred firing with L{None}.
        """

    def setCopyState(copy, read=None, labels=None, folder=None):
        """
        Change a copy's read flag, labels or folder; L{None} leaves each as
        it is.  @return: Deferred firing with the updated L{Copy}.
        """

    def readerInboxes(account):
        """
        The inboxes an account's IMAP view shows as folders: every address
        it owns, and every address of its private domains that has mail
        (never one another account reserved there), sorted.
        @return: Deferred firing with a list of addresses.
        """

    def mailboxFlags(query):
        """
        The copies of a mailbox with their flags, by ascending uid (IMAP's
        sequence numbers).
        @param query: A L{capture.store.model.MailboxQuery}.
        @return: Deferred firing with a list of L{FlagState}.
        """

    def nextUid():
        """
        A uid no copy has had and every new copy will have or exceed (the
        store-wide sequence's next value): IMAP's UIDNEXT of every mailbox,
        which never goes back, even after the newest copy is deleted.
        @return: Deferred firing with an L{int}.
        """

    def fetchMessages(uids, envelope=False, structure=False, raw=False, headersOnly=False,
                      part=False):
        """
        What a FETCH needs of many copies, in one read.

        @param uids: The copies' uids (the caller has checked they are in a
            mailbox its viewer may read).
        @param raw: Read the raw bytes; with C{headersOnly}, only the header
            block.
        @param part: Parse the stored part tree into a L{capture.mime.Part}.
        @return: Deferred firing with a dict of uid to L{FetchedMessage}
            (copies deleted meanwhile are missing).
        """

    def fetchMetadata(uids, envelope=False, structure=False):
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

    def searchMessages(uids, match, bodies=False):
        """
        Which of C{uids} satisfy C{match}, tested in one read on a read
        thread (never the reactor).

        @param match: A callable taking a L{FlagState}, a L{FetchedMessage}
            (with C{raw} when C{bodies}, else only the header block) and the
            decoded text and HTML bodies, returning a bool.
        @return: Deferred firing with the list of matching uids, ascending.
        """

    def setFlags(states):
        """
        Write the IMAP flags of several copies at once (C{read}, C{deleted},
        C{answered}, C{flagged}, C{labels}): the same facts the HTTP API
        shows.
        @param states: A list of L{FlagState}.
        @return: Deferred firing with L{None}.
        """

    def deleteCopies(uids):
        """
        Delete several copies in one write (messages go with their last
        copy).  @return: Deferred firing with the uids that were deleted.
        """

    def listAccountInbox(account, limit=20, skip=0, since=None, beforeUid=None):
        """
        The account's unified inbox: copies in the inboxes it owns and the
        copies it starred, newest first.

        @param since: Only copies received at or after this time (ms).
        @param beforeUid: Only copies with a smaller uid (a cursor: the
            last uid of the page before; cheaper than C{skip} deep down).
        @return: Deferred firing with C{(copies, unread)}, C{unread} counting
            the whole inbox.
        """

    def searchAccount(account, subject=None, sender=None, recipient=None, read=None,
                      anyOf=None, limit=100):
        """
        Search the account's unified inbox: every condition given must hold
        (C{subject}, C{sender}, C{recipient}: substrings, case-insensitive;
        C{read}), and C{anyOf} matches subject, sender or recipients.
        @return: Deferred firing with a list of L{Copy}, newest first.
        """

    def searchAccountWindow(account, anyOf, limit=100, beforeUid=None, scan=10_000):
        """
        L{searchAccount}'s C{anyOf} search with its work bounded, as
        L{searchInbox}: at most C{scan} of the account's copies (the newest
        below C{beforeUid}) are examined per call.

        @return: Deferred firing with C{(copies, nextBefore)}: at most
            C{limit} matching L{Copy}, newest first, and the C{beforeUid}
            to search older copies with, or L{None} when nothing older is
            left.
        """

    def searchInbox(inbox, visibility, words, limit=50, beforeUid=None, scan=10_000):
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
        @param words: Non-empty strings, each required.
        @return: Deferred firing with C{(copies, nextBefore)}: at most
            C{limit} matching L{Copy}, and the C{beforeUid} to search older
            copies with, or L{None} when nothing older is left.
        """

    def purgeInbox(inbox):
        """
        Delete every unstarred copy of an inbox (Mailsac's purge keeps
        starred mail).  @return: Deferred firing with how many went.
        """

    def listDomain(domain, account, visibility, limit=20, until=None):
        """
        Copies filed in C{domain}, newest first, as C{account} (the
        domain's owner) may list them: never the inbox of an address
        another account reserved inside the domain.
        @return: Deferred firing with a list of L{Copy}.
        """

    def countDomain(domain, account, visibility):
        """
        How many copies L{listDomain} could list, without a limit.
        @return: Deferred firing with an L{int}.
        """

    def purgeDomain(domain, account):
        """
        Delete every unstarred copy filed in C{domain}, except in addresses
        another account reserved there.
        @return: Deferred firing with how many went.
        """

    def accountStats(account):
        """
        Counts for Mailsac's C{/me/stats}.
        @return: Deferred firing with an L{AccountStats}.
        """

    def listStarred(account, limit=50):
        """
        Copies starred by C{account}, newest first, wherever they are.
        @return: Deferred firing with a list of L{Copy}.
        """

    def setStarred(copy, account):
        """
        Star the copy for C{account}, or unstar it with L{None}.
        @return: Deferred firing with the updated L{Copy}.
        """

    def usage(account, month):
        """
        @param month: C{"YYYY-MM"} (UTC).
        @return: Deferred firing with the number of ops counted.
        """

    def countOp(account: str) -> None:
        """
        Count one op (an API call) for C{account} this month; counts may
        reach the stored total a moment later, and L{usage} includes them.
        """

    def enforceRetention(retention, now):
        """
        Recycle what the L{Retention} limits no longer allow, a bounded
        batch at a time; starred copies are never recycled.
        @return: Deferred firing with the number of copies removed.
        """

    # Health

    def ping():
        """
        A trivial read, through the same path every read takes: readiness
        checks call it with a deadline.

        @return: Deferred firing with L{None}, or failing with L{StoreError}
            at once when the store is not running.
        """

    def load():
        """
        @return: The L{StoreLoad} now (queue depths, read at scrape time).
        """
