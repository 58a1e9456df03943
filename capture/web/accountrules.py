# -*- test-case-name: tests.test_api, tests.test_accountpages -*-
"""
What an account may do to its owned addresses and custom domains, shared
by the API (C{/api/addresses/<email>}, C{/api/domains/<domain>}) and the
settings page (C{/account/settings}): the checks, the refusals and their
wording live here once, so the two cannot drift apart.

Refusals are L{ApiError}s with the API's status codes (Mailsac's: 401 for
another account's address); the pages show their message as a form error.
"""

from __future__ import annotations

import re
from typing import Any

from capture.addresses import customDomain
from capture.addresses import inboxOf as _inboxOf
from capture.store.errors import Conflict, NotFound
from capture.store.interface import IOwnershipStore, IStore
from capture.store.model import Domain, OwnedAddress
from capture.web.responses import ApiError

_WEBHOOK_RE = re.compile(r"https?://[^\s]{1,2000}")
ANOTHER_ACCOUNTS = "That address belongs to another account."
ANOTHER_ACCOUNTS_DOMAIN = "That domain belongs to another account."
NOT_YOURS = "You do not own that address."
THROUGH_DOMAIN = "That address is not reserved: it is yours through its domain."
NO_CATCH_ALL_DOMAIN = "A catch-all address (*@domain) needs a custom domain of yours."
CATCH_ALL = "*@"


def inboxOf(email: str) -> str:
    """
    The inbox an address files into (plus-addressing stripped).

    @raise ApiError: 400 for text that is not an email address.
    """
    inbox = _inboxOf(email)
    if inbox is None:
        raise ApiError(400, "Invalid email address.", [f"{email!r} is not an email address"])
    return inbox


def domainName(domain: str) -> str:
    """
    A domain name in its canonical form (lower case, U-labels), from
    either spelling of an internationalized name.

    @raise ApiError: 400 for text that is not a domain name.
    """
    name = customDomain(domain)
    if name is None:
        raise ApiError(400, "Invalid domain.", [f"{domain!r} is not a domain name"])
    return name


def addressSettings(body: Any) -> dict[str, Any]:
    """
    The owned-address settings (Mailsac's C{UpdatePrivateAddressForwarding}:
    C{info}, C{forward}, C{webhook}, C{enablews}) a JSON body gives; Slack
    fields are accepted and ignored (Capture posts to no Slack).

    @raise ApiError: 400 naming every bad value.
    """
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object.", ["body must be an object"])
    settings: dict[str, Any] = {}
    errors = []
    for name in ("info", "forward", "webhook"):
        if name in body:
            value = body[name]
            if value is not None and not isinstance(value, str):
                errors.append(f"{name} must be a string or null")
            elif name == "webhook" and value and not _WEBHOOK_RE.fullmatch(value):
                errors.append("webhook must be an http(s) URL")
            else:
                settings[name] = "" if name == "info" and value is None else value
    if "enablews" in body:
        if not isinstance(body["enablews"], bool):
            errors.append("enablews must be true or false")
        else:
            settings["enablews"] = body["enablews"]
    if errors:
        raise ApiError(400, "Invalid address settings.", errors)
    return settings


def isCatchAll(inbox: str) -> bool:
    """
    Whether C{inbox} is a domain's catch-all address (C{*@domain}).
    """
    return inbox.startswith(CATCH_ALL)


async def ownsDomainOf(store: IOwnershipStore, inbox: str, viewer: str) -> bool:
    """
    Whether C{viewer} owns the custom domain C{inbox} is in (private or
    public): a domain's owner reads and configures every address in it.
    """
    return await store.domainOwner(inbox.rpartition("@")[2]) == viewer


async def checkCatchAll(store: IOwnershipStore, viewer: str, inbox: str) -> None:
    """
    Refuse a catch-all address of a domain that is not C{viewer}'s: 400
    for a domain nobody owns, 401 for another account's.
    """
    if not isCatchAll(inbox):
        return
    owner = await store.domainOwner(inbox.rpartition("@")[2])
    if owner is None:
        raise ApiError(400, NO_CATCH_ALL_DOMAIN)
    if owner != viewer:
        raise ApiError(401, ANOTHER_ACCOUNTS_DOMAIN)


async def notAnotherAccounts(store: IOwnershipStore, inbox: str, viewer: str) -> None:
    """
    Refuse (401, as Mailsac does) an address another account owns.
    """
    owner = await store.inboxOwner(inbox)
    if owner.account is not None and owner.account != viewer:
        raise ApiError(401, ANOTHER_ACCOUNTS)


async def reserve(
    store: IOwnershipStore, viewer: str, inbox: str, settings: dict[str, Any]
) -> OwnedAddress:
    """
    Reserve C{inbox} for C{viewer}, with C{settings} (L{addressSettings}).
    An address of the viewer's own private domain is the viewer's already
    (implicitly) but may still be reserved: reserving gives it settings of
    its own (Mailsac: addresses in a custom domain are routed only once
    reserved).  A catch-all (C{*@domain}) only in the viewer's own domain.
    """
    await checkCatchAll(store, viewer, inbox)
    owner = await store.inboxOwner(inbox)
    if owner.account == viewer and not owner.implicit:
        raise ApiError(400, "You own that address already.")
    if owner.account is not None and owner.account != viewer:
        raise ApiError(401, ANOTHER_ACCOUNTS)
    try:
        reserved: OwnedAddress = await store.reserveAddress(viewer, inbox)
    except Conflict:
        raise ApiError(401, ANOTHER_ACCOUNTS) from None
    if settings:
        reserved = await store.updateAddress(viewer, inbox, settings)
    return reserved


async def update(
    store: IOwnershipStore, viewer: str, inbox: str, settings: dict[str, Any]
) -> OwnedAddress:
    """
    Change the settings of C{viewer}'s owned address C{inbox}.  An address
    of the viewer's own domain that has no settings yet gets its own record
    (as reserving would give it), so its owner configures it like any other.
    """
    await notAnotherAccounts(store, inbox, viewer)
    try:
        updated: OwnedAddress = await store.updateAddress(viewer, inbox, settings)
    except NotFound:
        if not await ownsDomainOf(store, inbox, viewer):
            raise ApiError(400, NOT_YOURS) from None
        try:
            await store.reserveAddress(viewer, inbox)
        except Conflict:
            raise ApiError(401, ANOTHER_ACCOUNTS) from None
        updated = await store.updateAddress(viewer, inbox, settings)
    return updated


async def release(store: IStore, viewer: str, inbox: str, deleteMessages: bool) -> None:
    """
    Give C{viewer}'s owned address up; with C{deleteMessages}, its mail
    goes first (all but starred mail, as the inbox purge does).
    """
    await notAnotherAccounts(store, inbox, viewer)
    if deleteMessages:
        if (await store.inboxOwner(inbox)).account != viewer:
            raise ApiError(400, NOT_YOURS)
        await store.purgeInbox(inbox)
    try:
        await store.releaseAddress(viewer, inbox)
    except NotFound:
        if await ownsDomainOf(store, inbox, viewer):
            raise ApiError(400, THROUGH_DOMAIN) from None
        raise ApiError(400, NOT_YOURS) from None


async def ownedDomain(store: IOwnershipStore, viewer: str, domain: str, otherCode: int = 401) -> Domain:
    """
    The viewer's custom domain C{domain}.

    @raise ApiError: C{otherCode} for another account's domain, 404 for
        a domain nobody owns.
    """
    for owned in await store.listDomains(viewer):
        if owned.domain == domain:
            return owned
    if await store.domainOwner(domain) is not None:
        raise ApiError(otherCode, ANOTHER_ACCOUNTS_DOMAIN)
    raise ApiError(404, "Domain not found.", [f"{domain} is not a custom domain"])


async def addDomain(store: IOwnershipStore, viewer: str, name: str, isPrivate: bool) -> Domain:
    """
    Claim custom domain C{name} for C{viewer}.
    """
    if name in {d.domain for d in await store.listDomains(viewer)}:
        raise ApiError(400, "You own that domain already.")
    try:
        added: Domain = await store.addDomain(viewer, name, isPrivate)
    except Conflict:
        raise ApiError(401, ANOTHER_ACCOUNTS_DOMAIN) from None
    return added


async def removeDomain(store: IOwnershipStore, viewer: str, name: str) -> None:
    """
    Give C{viewer}'s custom domain C{name} up; its mail stays, public.
    """
    await ownedDomain(store, viewer, name)
    try:
        await store.removeDomain(viewer, name)
    except NotFound:
        raise ApiError(404, "Domain not found.") from None


async def setDomainPrivacy(store: IOwnershipStore, viewer: str, name: str, isPrivate: bool) -> Domain:
    """
    Make C{viewer}'s custom domain private or public.
    """
    await ownedDomain(store, viewer, name)
    updated: Domain = await store.setDomainPrivacy(viewer, name, isPrivate)
    return updated
