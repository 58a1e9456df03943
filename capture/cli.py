# -*- test-case-name: tests.test_cli -*-
"""
C{capture}: the admin console, for accounts, API keys and stored mail.

It opens the same data directory as the running server, through the store
(never SQL of its own); the database is in WAL mode and the server reads
accounts and keys on every login, so what the console changes takes effect
at once, without a restart.

Each command prints what it did to stdout; an error is one line on stderr,
C{capture: <what went wrong>}, and exit status 1 (2 for a usage error).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from twisted.internet.task import react

from capture.access import Visibility
from capture.addresses import customDomain, inboxOf
from capture.emailmessage import isoTime
from capture.store import hasStoredData, makeStore
from capture.store.errors import Conflict, NotFound, StoreError
from capture.store.interface import IAccountStore, IMessageStore, IOwnershipStore
from capture.store.model import Account, Copy

_NAME_RE = re.compile(r"[^@\s]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")


class CommandError(Exception):
    """
    A command cannot do what was asked; the message is shown to the admin.
    """


def _field(text: str) -> str:
    """
    Text fit for one tab-separated field: no tabs, newlines or other controls.
    """
    return _CONTROL_RE.sub(" ", text)


def _onOff(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, not {text!r}")
    return lowered == "on"


def _count(text: str, minimum: int) -> int:
    if not text.isdigit() or int(text) < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, not {text!r}")
    return int(text)


def _accountName(text: str) -> str:
    if not _NAME_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"not an account name: {text!r} (no spaces, no @)"
        )
    return text


# The commands


async def accountCreate(store: IAccountStore, args: argparse.Namespace) -> None:
    """
    Create an account and print its first API key, alone on the last line.
    """
    try:
        account, key = await store.createAccount(args.name)
    except Conflict:
        raise CommandError(f"account {args.name!r} exists already") from None
    if args.newStore:
        print(f"Created a new Capture store in {args.data}.", file=sys.stderr)
    print(f"Created account {account.name}. Its API key, shown this once:")
    print(key)


async def accountList(store: IAccountStore, args: argparse.Namespace) -> None:
    """
    One line per account: name, created, capture-private, live keys and
    message limit.
    """
    for account in await store.listAccounts():
        keys = await store.listKeys(account.name)
        live = sum(1 for k in keys if k.revoked is None)
        print(
            f"{account.name}\tcreated={isoTime(account.created)}\t"
            f"capture-private={'on' if account.capturePrivate else 'off'}\t"
            f"keys={live}\tmessage-limit={_limit(account)}"
        )


def _limit(account: Account) -> str:
    if account.messageLimit is None:
        return "default"
    return str(account.messageLimit) if account.messageLimit else "none"


async def accountSet(store: IAccountStore, args: argparse.Namespace) -> None:
    """
    Change an account's settings and print them.
    """
    account = await store.setAccountSettings(
        args.name, capturePrivate=args.capturePrivate, messageLimit=args.messageLimit
    )
    print(
        f"{account.name}: capture-private {'on' if account.capturePrivate else 'off'}, "
        f"message limit {_limit(account)}"
    )


async def accountDelete(store: IAccountStore, args: argparse.Namespace) -> None:
    """
    Delete an account: its keys, its addresses and domains (released), the
    mail in them (not what another account starred), its stars elsewhere.
    No confirmation, like every other command here: it is a script's tool.
    """
    deleted = await store.deleteAccount(args.name)
    print(
        f"Deleted account {args.name}: {deleted.keys} API keys, "
        f"{len(deleted.addresses)} addresses and {len(deleted.domains)} domains released, "
        f"{deleted.copiesDeleted} messages deleted, {deleted.starsDropped} stars dropped."
    )


async def keyCreate(store: IAccountStore, args: argparse.Namespace) -> None:
    """
    Add an API key to an account and print it, alone on the last line.
    """
    key = await store.createKey(args.name, args.label)
    print(f"New API key of {args.name}, shown this once:")
    print(key)


async def keyList(store: IAccountStore, args: argparse.Namespace) -> None:
    """
    One line per key of an account: prefix, label, created, revoked.
    """
    for key in await store.listKeys(args.name):
        revoked = "live" if key.revoked is None else f"revoked={isoTime(key.revoked)}"
        print(
            f"{key.prefix}\tlabel={_field(key.label)}\tcreated={isoTime(key.created)}\t{revoked}"
        )


async def keyRevoke(store: IAccountStore, args: argparse.Namespace) -> None:
    """
    Revoke the one live key of an account that starts with a prefix.
    """
    info = await store.revokeKey(args.name, args.prefix)
    print(f"Revoked key {info.prefix} of {info.account}.")


async def domainAdd(store: IOwnershipStore, args: argparse.Namespace) -> None:
    """
    Make a domain one of an account's custom domains.
    """
    domain = await store.addDomain(args.name, args.domain, isPrivate=not args.public)
    print(
        f"{domain.domain} is now a {'private' if domain.isPrivate else 'public'} "
        f"domain of {domain.account}."
    )


async def domainList(store: IOwnershipStore, args: argparse.Namespace) -> None:
    """
    One line per custom domain of an account: domain, privacy, created.
    """
    for domain in await store.listDomains(args.name):
        print(
            f"{domain.domain}	{'private' if domain.isPrivate else 'public'}	"
            f"created={isoTime(domain.created)}"
        )


async def domainRemove(store: IOwnershipStore, args: argparse.Namespace) -> None:
    """
    Give a custom domain up; its mail stays, public from now on.
    """
    await store.removeDomain(args.name, args.domain)
    print(f"{args.domain} is no longer a domain of {args.name}.")


async def inbox(store: IMessageStore, args: argparse.Namespace) -> None:
    """
    The copies in an inbox, newest first, then how many it holds in all.
    """
    everything = Visibility(everything=True)
    copies = await store.listInbox(args.address, everything, limit=args.limit)
    for copy in copies:
        print(_copyLine(copy))
    print(f"{await store.countInbox(args.address, everything)} messages")


def _copyLine(copy: Copy) -> str:
    message = copy.message
    sender = message.fromAddresses[0].address if message.fromAddresses else "-"
    fields = [copy.id, isoTime(message.received), sender, message.subject, str(message.size)]
    if copy.savedBy is not None:
        fields.append(f"starred={copy.savedBy}")
    return "\t".join(_field(f) for f in fields)


async def show(store: IMessageStore, args: argparse.Namespace) -> None:
    """
    Write the raw bytes of a stored message to stdout, exactly.
    """
    raw = await store.getRaw(await store.getCopy(args.id))
    sys.stdout.buffer.write(raw)
    sys.stdout.buffer.flush()


# Arguments and running


def makeParser() -> argparse.ArgumentParser:
    """
    The parser of C{capture}'s arguments; each command is in C{command}.
    """
    parser = argparse.ArgumentParser(
        prog="capture",
        description="Administer a Capture server: accounts, API keys, custom domains and "
        "stored mail. "
        "Works on the data directory of a running server; changes take effect at once.",
        epilog="Errors are one line on stderr and exit status 1.",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=os.environ.get("CAPTURE_DATA", "./capture-data"),
        help="data directory of the server (default: $CAPTURE_DATA, else ./capture-data)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    account = commands.add_parser("account", help="create, list and configure accounts")
    accountCommands = account.add_subparsers(title="commands", required=True, metavar="COMMAND")
    create = accountCommands.add_parser(
        "create",
        help="create an account; its API key is the last line of output",
        description="Create an account (and the data directory, if new). Its API key is "
        "printed alone on the last line of output, this once: it is stored only hashed.",
    )
    create.add_argument("name", metavar="NAME", type=_accountName)
    create.set_defaults(command=accountCreate, creates=True)
    listing = accountCommands.add_parser(
        "list",
        help="list accounts",
        description="One tab-separated line per account: name, created (UTC), "
        "capture-private, number of live API keys, message limit.",
    )
    listing.set_defaults(command=accountList)
    settings = accountCommands.add_parser(
        "set", help="change an account's settings", description="Change an account's settings."
    )
    settings.add_argument("name", metavar="NAME")
    settings.add_argument(
        "--capture-private", dest="capturePrivate", type=_onOff, metavar="on|off",
        help="star (keep private) every message the account sends",
    )
    settings.add_argument(
        "--message-limit", dest="messageLimit", type=lambda t: _count(t, 0), metavar="N",
        help="copies the account may keep before the oldest are recycled (0: no limit)",
    )
    settings.set_defaults(command=accountSet)
    delete = accountCommands.add_parser(
        "delete",
        help="delete an account, its keys, addresses, domains and their mail",
        description="Delete an account at once (no confirmation): its API keys; its owned "
        "addresses and custom domains are released and the mail in them is deleted, but "
        "copies another account starred; its stars on other mail are dropped; mail it "
        "sent stays with its recipients. Its sessions and logins end.",
    )
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(command=accountDelete)

    key = commands.add_parser("key", help="create, list and revoke API keys")
    keyCommands = key.add_subparsers(title="commands", required=True, metavar="COMMAND")
    create = keyCommands.add_parser(
        "create",
        help="add an API key to an account; the key is the last line of output",
        description="Add an API key to an account. The key is printed alone on the last "
        "line of output, this once.",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--label", default="", help="a note to tell the key apart")
    create.set_defaults(command=keyCreate)
    listing = keyCommands.add_parser(
        "list",
        help="list an account's API keys",
        description="One tab-separated line per API key: prefix, label, created (UTC), "
        "and live or when it was revoked.",
    )
    listing.add_argument("name", metavar="NAME")
    listing.set_defaults(command=keyList)
    revoke = keyCommands.add_parser(
        "revoke",
        help="revoke an API key at once",
        description="Revoke the one live key of NAME whose text starts with PREFIX (the "
        "prefix 'key list' shows, or the whole key). A running server refuses it at once.",
    )
    revoke.add_argument("name", metavar="NAME")
    revoke.add_argument("prefix", metavar="PREFIX")
    revoke.set_defaults(command=keyRevoke)

    domain = commands.add_parser("domain", help="add, list and remove custom domains")
    domainCommands = domain.add_subparsers(title="commands", required=True, metavar="COMMAND")
    add = domainCommands.add_parser(
        "add",
        help="make DOMAIN a custom domain of account NAME",
        description="Make DOMAIN a custom domain of account NAME. A private domain (the "
        "default) makes every address in it the account's, its earlier mail included.",
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument("domain", metavar="DOMAIN")
    add.add_argument("--public", action="store_true",
                     help="keep the domain's inboxes public (readable by anyone)")
    add.set_defaults(command=domainAdd)
    listing = domainCommands.add_parser(
        "list",
        help="list an account's custom domains",
        description="One tab-separated line per custom domain: domain, private or public, "
        "created (UTC).",
    )
    listing.add_argument("name", metavar="NAME")
    listing.set_defaults(command=domainList)
    remove = domainCommands.add_parser(
        "remove",
        help="give a custom domain up",
        description="Give DOMAIN up; its mail stays, public from now on.",
    )
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("domain", metavar="DOMAIN")
    remove.set_defaults(command=domainRemove)

    listInbox = commands.add_parser(
        "inbox",
        help="list the messages of an inbox",
        description="The messages of one inbox, newest first, starred ones included; one "
        "tab-separated line each: id, received (UTC), from, subject, size in octets, and "
        "'starred=ACCOUNT' when an account starred it. The last line is the inbox's total, "
        "'N messages', which --limit does not change.",
    )
    listInbox.add_argument("address", metavar="ADDRESS")
    listInbox.add_argument(
        "--limit", type=lambda t: _count(t, 1), default=50, metavar="N",
        help="show at most N messages (default: 50)",
    )
    listInbox.set_defaults(command=inbox)

    showRaw = commands.add_parser(
        "show",
        help="print a message's raw bytes",
        description="Write the message with this id (as 'inbox' lists it) to stdout "
        "exactly as stored: Capture's Received: line, then the bytes the client sent.",
    )
    showRaw.add_argument("id", metavar="ID")
    showRaw.set_defaults(command=show)
    return parser


def _checkArguments(args: argparse.Namespace) -> None:
    """
    Refuse, before opening the store, what can be told wrong without it.
    """
    if hasattr(args, "address"):
        # user+tag@example.org is filed in user@example.org, and
        # info@xn--exmple-cua.test in info@exämple.test.
        inbox = inboxOf(args.address.strip())
        if inbox is None:
            raise CommandError(f"not an email address: {args.address.strip()!r}")
        args.address = inbox
    if hasattr(args, "domain"):
        domain = customDomain(args.domain.strip())
        if domain is None:
            raise CommandError(f"not a domain name: {args.domain.strip().lower()!r}")
        args.domain = domain
    args.newStore = not hasStoredData(args.data)
    if args.newStore and not getattr(args, "creates", False):
        raise CommandError(
            f"no Capture data in {args.data} (wrong --data or CAPTURE_DATA? "
            f"'capture account create NAME' starts a new store)"
        )


async def run(reactor: Any, args: argparse.Namespace) -> None:
    """
    Open the store, run the command, close the store; a failure the admin
    can act on becomes L{SystemExit} after its one line on stderr.
    """
    store = makeStore(args.data, reactor)
    try:
        store.start()
    except StoreError as e:
        # SchemaTooNew, or StoreUnavailable naming the data directory: the
        # store's message is the whole line.
        _fail(str(e))
    try:
        await args.command(store, args)
    except (CommandError, NotFound, Conflict, StoreError) as e:
        _fail(str(e))
    finally:
        await store.stop()


def _fail(message: str) -> NoReturn:
    print(f"capture: {message}", file=sys.stderr)
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """
    The C{capture} command.
    """
    parser = makeParser()
    args = parser.parse_args(argv)
    if args.command is accountSet and args.capturePrivate is None and args.messageLimit is None:
        parser.error("account set: give --capture-private or --message-limit")
    try:
        _checkArguments(args)
    except CommandError as e:
        _fail(str(e))
    react(run, (args,))


if __name__ == "__main__":
    main()
