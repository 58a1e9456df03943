# -*- test-case-name: tests.test_access -*-
"""
Who may see and touch which copy: Mailsac's privacy rules, in one place.

Every protocol (SMTP's own checks, the HTTP API, the web pages, IMAP, POP3)
asks L{permits} about one copy, or L{visibility} for a whole inbox listing, so
the rules cannot drift apart between readers.  The rules
(C{reference/mailsac-api.md} section 3):

  - a public inbox (no owner) is readable, and its mail deletable, by anyone;
  - an owned address, or an address in a private domain, only by its owner;
  - a starred copy only by the account that starred it (and the owner of
    the inbox it is in, who owns everything there; in someone else's inbox
    the starring account may read and unstar its copy, not delete it);
  - starring needs an account; purging a whole inbox needs ownership.
"""

from __future__ import annotations

import attrs
from constantly import NamedConstant, Names

from capture.store.model import InboxOwner


class Action(Names):
    """
    What a viewer wants to do with a copy.
    """

    READ = NamedConstant()
    DELETE = NamedConstant()
    STAR = NamedConstant()
    FLAG = NamedConstant()
    PURGE = NamedConstant()


@attrs.frozen
class Visibility:
    """
    Which copies of one inbox a viewer may list, in a form a store turns
    into a query.

    @ivar everything: All copies, starred or not.
    @ivar starredBy: When not C{everything}: copies starred by nobody, plus
        those starred by this account (L{None}: only unstarred copies).
    """

    everything: bool
    starredBy: str | None = None


def permits(
    viewer: str | None,
    action: NamedConstant,
    owner: InboxOwner,
    savedBy: str | None,
    publicReadable: bool = True,
) -> bool:
    """
    May C{viewer} do C{action} to a copy?

    @param viewer: The account asking, or L{None} for no key.
    @param owner: Who owns the copy's inbox.
    @param savedBy: The account that starred the copy, if any; ignored for
        L{Action.PURGE}, which is about the inbox.
    @param publicReadable: Whether public inboxes may be read without a key.
    """
    if action is Action.PURGE:
        return owner.account is not None and viewer == owner.account
    if owner.account is not None:
        if viewer == owner.account:
            return True
        # Someone who starred a copy in another account's inbox (a sender
        # with capturePrivate, say) may read it and unstar it, but the
        # inbox's mail stays the owner's to delete or flag.
        return savedBy is not None and viewer == savedBy and action in (Action.READ, Action.STAR)
    if savedBy is not None:
        return viewer == savedBy
    if viewer is None:
        return publicReadable and action in (Action.READ, Action.DELETE)
    return True


def visibility(
    viewer: str | None, owner: InboxOwner, publicReadable: bool = True
) -> Visibility | None:
    """
    Which copies of an inbox C{viewer} may list; L{None} when it may list
    none (the caller answers as for someone else's inbox).

    Agrees with L{permits} for L{Action.READ} on every copy of an inbox it
    returns a L{Visibility} for (tested).  A copy starred by the viewer in
    someone else's owned inbox is readable by id and in the viewer's starred
    listing, but the inbox itself stays closed to it, as at Mailsac (403).
    """
    if owner.account is not None:
        if viewer == owner.account:
            return Visibility(everything=True)
        return None
    if viewer is None and not publicReadable:
        return None
    return Visibility(everything=False, starredBy=viewer)


def visibleTo(vis: Visibility, savedBy: str | None) -> bool:
    """
    Whether a copy starred by C{savedBy} is in a listing of C{vis}.
    """
    return vis.everything or savedBy is None or savedBy == vis.starredBy
