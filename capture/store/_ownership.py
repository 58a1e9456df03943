# -*- test-case-name: tests.test_store -*-
"""
Owned addresses and domains: reserving and releasing them, their
settings, who owns an inbox, and the routes (forward, webhook) of inboxes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, fail

from capture.store._backend import Connection
from capture.store._base import CoreBase, _account, _now
from capture.store._privacy import owner
from capture.store._rows import (
    ADDRESS_COLUMNS,
    ADDRESS_SETTINGS,
    addressFromRow,
)
from capture.store.errors import Conflict, NotFound
from capture.store.model import (
    Domain,
    InboxOwner,
    OwnedAddress,
)


class Ownership(CoreBase):
    """
    Reserved addresses and custom domains, and where mail to an inbox goes.
    """

    def reserveAddress(self, account: str, address: str) -> Deferred[OwnedAddress]:
        address = address.lower()

        def op(conn: Connection) -> OwnedAddress:
            _account(conn, account)
            row = conn.execute(
                "SELECT account FROM addresses WHERE address = ?", (address,)
            ).fetchone()
            if row is not None:
                raise Conflict(f"{address} is owned already")
            now = _now()
            conn.execute(
                "INSERT INTO addresses(address, account, created, updated) VALUES (?, ?, ?, ?)",
                (address, account, now, now),
            )
            return OwnedAddress(address, account, now, now)

        return self._write(op)

    def releaseAddress(self, account: str, address: str) -> Deferred[None]:
        address = address.lower()

        def op(conn: Connection) -> None:
            cursor = conn.execute(
                "DELETE FROM addresses WHERE address = ? AND account = ?", (address, account)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"{account!r} does not own {address}")

        return self._write(op)

    def updateAddress(
        self, account: str, address: str, settings: dict[str, Any]
    ) -> Deferred[OwnedAddress]:
        address = address.lower()
        unknown = set(settings) - ADDRESS_SETTINGS
        if unknown:
            return fail(ValueError(f"unknown address settings: {sorted(unknown)}"))

        def op(conn: Connection) -> OwnedAddress:
            now = _now()
            for name, value in settings.items():
                conn.execute(
                    f"UPDATE addresses SET {name} = ?, updated = ? "
                    "WHERE address = ? AND account = ?",
                    (int(value) if name == "enablews" else value, now, address, account),
                )
            row = conn.execute(
                f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE address = ? AND account = ?",
                (address, account),
            ).fetchone()
            if row is None:
                raise NotFound(f"{account!r} does not own {address}")
            return addressFromRow(row)

        return self._write(op)

    def listAddresses(self, account: str) -> Deferred[list[OwnedAddress]]:
        def op(conn: Connection) -> list[OwnedAddress]:
            rows = conn.execute(
                f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE account = ? ORDER BY address",
                (account,),
            )
            return [addressFromRow(r) for r in rows]

        return self._read(op)

    def addDomain(self, account: str, domain: str, isPrivate: bool = True) -> Deferred[Domain]:
        domain = domain.lower()

        def op(conn: Connection) -> Domain:
            _account(conn, account)
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO domains(domain, account, is_private, created) VALUES (?, ?, ?, ?)",
                    (domain, account, int(isPrivate), now),
                )
            except self._dialect.integrityError:
                raise Conflict(f"{domain} is owned already") from None
            return Domain(domain, account, isPrivate, now)

        return self._write(op)

    def removeDomain(self, account: str, domain: str) -> Deferred[None]:
        domain = domain.lower()

        def op(conn: Connection) -> None:
            cursor = conn.execute(
                "DELETE FROM domains WHERE domain = ? AND account = ?", (domain, account)
            )
            if cursor.rowcount == 0:
                raise NotFound(f"{account!r} does not own {domain}")

        return self._write(op)

    def listDomains(self, account: str) -> Deferred[list[Domain]]:
        def op(conn: Connection) -> list[Domain]:
            rows = conn.execute(
                "SELECT domain, account, is_private, created FROM domains "
                "WHERE account = ? ORDER BY domain",
                (account,),
            )
            return [Domain(r[0], r[1], bool(r[2]), r[3]) for r in rows]

        return self._read(op)

    def domainOwner(self, domain: str) -> Deferred[str | None]:
        def op(conn: Connection) -> str | None:
            row = conn.execute(
                "SELECT account FROM domains WHERE domain = ?", (domain.lower(),)
            ).fetchone()
            return None if row is None else str(row[0])

        return self._read(op)

    def setDomainPrivacy(self, account: str, domain: str, isPrivate: bool) -> Deferred[Domain]:
        domain = domain.lower()

        def op(conn: Connection) -> Domain:
            cursor = conn.execute(
                "UPDATE domains SET is_private = ? WHERE domain = ? AND account = ?",
                (int(isPrivate), domain, account),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"{account!r} does not own {domain}")
            row = conn.execute(
                "SELECT domain, account, is_private, created FROM domains WHERE domain = ?",
                (domain,),
            ).fetchone()
            return Domain(row[0], row[1], bool(row[2]), row[3])

        return self._write(op)

    def reserveAddresses(
        self, account: str, addresses: list[str]
    ) -> Deferred[list[OwnedAddress]]:
        wanted = list(dict.fromkeys(a.lower() for a in addresses))

        def op(conn: Connection) -> list[OwnedAddress]:
            _account(conn, account)
            marks = ",".join("?" * len(wanted))
            held = {
                r[0]: r
                for r in conn.execute(
                    f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE address IN ({marks})",
                    wanted,
                )
            }
            # Another account's address, or an address in its private domain.
            taken = [a for a in wanted if owner(conn, a).account not in (None, account)]
            if taken:
                raise Conflict(", ".join(taken))
            now = _now()
            conn.executemany(
                "INSERT INTO addresses(address, account, created, updated) VALUES (?, ?, ?, ?)",
                [(a, account, now, now) for a in wanted if a not in held],
            )
            return [
                addressFromRow(held[a]) if a in held else OwnedAddress(a, account, now, now)
                for a in wanted
            ]

        return self._write(op)

    def inboxOwner(self, address: str) -> Deferred[InboxOwner]:
        return self._read(lambda conn: owner(conn, address.lower()))

    def routes(self, inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        wanted = sorted({inbox.lower() for inbox in inboxes})
        return self._read(lambda conn: _routes(conn, wanted))

    def webhookTargets(self, inboxes: Iterable[str]) -> Deferred[dict[str, OwnedAddress]]:
        wanted = sorted({inbox.lower() for inbox in inboxes})

        def op(conn: Connection) -> dict[str, OwnedAddress]:
            return {i: r for i, r in _routes(conn, wanted).items() if r.webhook}

        return self._read(op)

def _routes(conn: Connection, inboxes: list[str]) -> dict[str, OwnedAddress]:
    """
    L{IStore.routes}: each inbox's own address record, else its domain's
    catch-all when that catch-all's account owns the domain (a catch-all
    left behind by a released domain routes nothing).
    """
    found: dict[str, OwnedAddress] = {}
    # SQLite allows 999 parameters per statement in old builds.
    for start in range(0, len(inboxes), 500):
        chunk = inboxes[start : start + 500]
        for row in conn.execute(
            f"SELECT {ADDRESS_COLUMNS} FROM addresses WHERE address IN "
            f"({','.join('?' * len(chunk))})",
            chunk,
        ):
            address = addressFromRow(row)
            found[address.address] = address
    byCatchAll: dict[str, list[str]] = {}
    for inbox in inboxes:
        if inbox not in found:
            byCatchAll.setdefault("*@" + inbox.rpartition("@")[2], []).append(inbox)
    names = sorted(byCatchAll)
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for row in conn.execute(
            f"SELECT {ADDRESS_COLUMNS} FROM addresses a WHERE address IN "
            f"({','.join('?' * len(chunk))}) AND EXISTS (SELECT 1 FROM domains d "
            "WHERE d.account = a.account AND '*@' || d.domain = a.address)",
            chunk,
        ):
            catchAll = addressFromRow(row)
            for inbox in byCatchAll[catchAll.address]:
                found[inbox] = catchAll
    return found


