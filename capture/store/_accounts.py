# -*- test-case-name: tests.test_store -*-
"""
The store's accounts and keys: creating and deleting accounts, their
settings, API keys, logins and web sessions, and Mailsac's op counts.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred

from capture.addresses import canonicalDomain, inboxOf
from capture.events import ChangedCopy
from capture.ids import newApiKey
from capture.store._backend import Connection
from capture.store._base import CoreBase, _account, _now
from capture.store._keys import insertKey, keyAccount, keyHash, namedKey
from capture.store._listing import refreshListing
from capture.store._privacy import owner
from capture.store._removal import deleteCopies
from capture.store._rows import changedCopies
from capture.store.errors import Conflict
from capture.store.model import (
    Account,
    AccountDeletion,
    ApiKeyInfo,
    InboxOwner,
    RemovedCopy,
)


class Accounts(CoreBase):
    """
    Accounts, API keys, logins, sessions and op counts.
    """

    def createAccount(self, name: str, key: str | None = None) -> Deferred[tuple[Account, str]]:
        theKey = key or newApiKey()

        def op(conn: Connection) -> tuple[Account, str]:
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO accounts(name, created) VALUES (?, ?)", (name, now)
                )
            except self._dialect.integrityError:
                raise Conflict(f"account {name!r} exists already") from None
            try:
                insertKey(conn, name, theKey, "", now)
            except self._dialect.integrityError:
                # Only a chosen key (--accept-any-auth) can collide.
                raise Conflict("that key belongs to another account") from None
            return Account(name, now, False, None), theKey

        return self._write(op)

    def getAccount(self, name: str) -> Deferred[Account]:
        return self._read(lambda conn: _account(conn, name))

    def listAccounts(self) -> Deferred[list[Account]]:
        def op(conn: Connection) -> list[Account]:
            rows = conn.execute(
                "SELECT name, created, capture_private, message_limit "
                "FROM accounts ORDER BY name"
            )
            return [Account(r[0], r[1], bool(r[2]), r[3]) for r in rows]

        return self._read(op)

    def setAccountSettings(
        self,
        name: str,
        capturePrivate: bool | None = None,
        messageLimit: int | None = None,
    ) -> Deferred[Account]:
        def op(conn: Connection) -> Account:
            _account(conn, name)
            if capturePrivate is not None:
                conn.execute(
                    "UPDATE accounts SET capture_private = ? WHERE name = ?",
                    (int(capturePrivate), name),
                )
            if messageLimit is not None:
                conn.execute(
                    "UPDATE accounts SET message_limit = ? WHERE name = ?",
                    (messageLimit, name),
                )
            return _account(conn, name)

        return self._write(op)

    def createKey(self, account: str, label: str = "") -> Deferred[str]:
        key = newApiKey()

        def op(conn: Connection) -> str:
            _account(conn, account)
            insertKey(conn, account, key, label, _now())
            return key

        return self._write(op)

    def listKeys(self, account: str) -> Deferred[list[ApiKeyInfo]]:
        def op(conn: Connection) -> list[ApiKeyInfo]:
            _account(conn, account)
            rows = conn.execute(
                "SELECT account, prefix, label, created, revoked FROM api_keys "
                "WHERE account = ? ORDER BY created",
                (account,),
            )
            return [ApiKeyInfo(*r) for r in rows]

        return self._read(op)

    def deleteAccount(self, name: str) -> Deferred[AccountDeletion]:
        def op(
            conn: Connection,
        ) -> tuple[AccountDeletion, list[RemovedCopy], list[ChangedCopy]]:
            _account(conn, name)
            keys = conn.execute(
                "SELECT count(*) FROM api_keys WHERE account = ?", (name,)
            ).fetchone()[0]
            addresses = tuple(r[0] for r in conn.execute(
                "SELECT address FROM addresses WHERE account = ? ORDER BY address", (name,)))
            domains = tuple(r[0] for r in conn.execute(
                "SELECT domain FROM domains WHERE account = ? ORDER BY domain", (name,)))
            # Its inboxes' copies, but those another account starred (theirs
            # to keep) and, in its domains, addresses others reserved.
            uids = [r[0] for r in conn.execute(
                "SELECT c.uid FROM copies c WHERE (c.saved_by IS NULL OR c.saved_by = ?) AND ("
                "c.inbox IN (SELECT address FROM addresses WHERE account = ?) OR ("
                "c.domain IN (SELECT domain FROM domains WHERE account = ?) AND "
                f"{self._privacy.notOthers}))",
                (name, name, name, name),
            )]
            removed = deleteCopies(conn, uids)
            starred = [r[0] for r in conn.execute(
                "SELECT uid FROM copies WHERE saved_by = ?", (name,))]
            stars = conn.execute(
                "UPDATE copies SET saved_by = NULL WHERE saved_by = ?", (name,)
            ).rowcount
            refreshListing(conn, starred)
            unstarred = changedCopies(conn, starred)
            conn.execute("UPDATE messages SET account = NULL WHERE account = ?", (name,))
            conn.execute("DELETE FROM usage WHERE account = ?", (name,))
            # Keys, addresses and domains go with it (ON DELETE CASCADE).
            conn.execute("DELETE FROM accounts WHERE name = ?", (name,))
            deletion = AccountDeletion(keys, addresses, domains, len(removed), stars)
            return deletion, removed, unstarred

        def done(
            result: tuple[AccountDeletion, list[RemovedCopy], list[ChangedCopy]],
        ) -> AccountDeletion:
            self._ops.forget(name)
            self._removed(result[1])
            self._publishChanged(result[2])
            return result[0]

        return self._write(op).addCallback(done)

    def sessionGeneration(self, account: str, keyPrefix: str) -> Deferred[int | None]:
        def op(conn: Connection) -> int | None:
            row = conn.execute(
                "SELECT a.session_generation FROM accounts a JOIN api_keys k "
                "ON k.account = a.name WHERE a.name = ? AND k.prefix = ? "
                "AND k.revoked IS NULL LIMIT 1",
                (account, keyPrefix),
            ).fetchone()
            return None if row is None else int(row[0])

        return self._read(op)

    def endSessions(self, account: str) -> Deferred[int]:
        def op(conn: Connection) -> int:
            _account(conn, account)
            conn.execute(
                "UPDATE accounts SET session_generation = session_generation + 1 "
                "WHERE name = ?",
                (account,),
            )
            return int(conn.execute(
                "SELECT session_generation FROM accounts WHERE name = ?", (account,)
            ).fetchone()[0])

        return self._write(op)

    def revokeKey(self, account: str, prefix: str) -> Deferred[ApiKeyInfo]:
        def op(conn: Connection) -> ApiKeyInfo:
            _account(conn, account)
            rows = conn.execute(
                "SELECT hash, account, prefix, label, created FROM api_keys "
                "WHERE account = ? AND revoked IS NULL",
                (account,),
            ).fetchall()
            match = namedKey(rows, account, prefix)
            now = _now()
            conn.execute("UPDATE api_keys SET revoked = ? WHERE hash = ?", (now, match[0]))
            _, acct, pfx, label, created = match
            return ApiKeyInfo(acct, pfx, label, created, now)

        return self._write(op)

    def accountForKey(self, key: str) -> Deferred[str | None]:
        digest = keyHash(key)
        return self._read(lambda conn: keyAccount(conn, digest))

    def accountAndOwner(self, key: str, inbox: str) -> Deferred[tuple[str | None, InboxOwner]]:
        digest = keyHash(key)
        inbox = inbox.lower()
        return self._read(lambda conn: (keyAccount(conn, digest), owner(conn, inbox)))

    def resolveLogin(self, username: str) -> Deferred[str | None]:
        return self._read(lambda conn: _resolveLogin(conn, username))

    def checkLogin(self, username: str, key: str) -> Deferred[tuple[str | None, str | None]]:
        digest = keyHash(key) if key else None
        return self._read(lambda conn: (
            keyAccount(conn, digest) if digest is not None else None,
            _resolveLogin(conn, username),
        ))

    def usage(self, account: str, month: str) -> Deferred[int]:
        return self._ops.usage(account, month)

    def countOp(self, account: str) -> None:
        """
        Count one op (an API call) for C{account} this month: summed in
        memory and written once a second (L{OpCounter}).
        """
        self._ops.count(account)


def _resolveLogin(conn: Connection, username: str) -> str | None:
    name = username.strip()
    # The inbox the name files into (plus-tag removed), as SMTP and the
    # realm read it.
    lowered = inboxOf(name) or name.lower()
    row = conn.execute("SELECT name FROM accounts WHERE name = ?", (name,)).fetchone()
    if row:
        return str(row[0])
    if "@" in lowered:
        found = owner(conn, lowered)
        if found.account is not None:
            return found.account
    # A domain the account owns, or an address in one of its public
    # domains.
    domain = lowered.rpartition("@")[2]
    domain = canonicalDomain(domain) or domain
    row = conn.execute("SELECT account FROM domains WHERE domain = ?", (domain,)).fetchone()
    return str(row[0]) if row else None


