"""
The access rule (L{capture.access}) checked exhaustively against a table
written out by hand from the rules in the module docstring, C{DESIGN.md} and
C{reference/mailsac-api.md} sections 2 and 3.
"""

from __future__ import annotations

import itertools

import pytest

from capture.access import Action, Visibility, permits, visibility, visibleTo
from capture.store.model import PUBLIC, InboxOwner

VIEWERS = (None, "alice", "bob")
SAVED_BY = (None, "alice", "bob")
OWNERS = {
    "public": PUBLIC,
    "alice": InboxOwner("alice"),
    "aliceImplicit": InboxOwner("alice", implicit=True),
}
ACTIONS = tuple(Action.iterconstants())

# Stands for the keyless viewer, who is allowed only while public inboxes are
# readable without a key.
ANON = "<anonymous if publicReadable>"

# (owner kind, savedBy) -> action -> the viewers allowed.
#
# Public inbox: anyone reads and deletes unstarred mail (keyless too, when
# allowed); starring and flagging need an account; a starred copy belongs to
# the account that starred it alone; nobody purges a public inbox.
#
# Owned inbox (reserved address, or an address in a private domain): the
# owner does everything, including to copies someone else starred; another
# account may read a copy it starred there (and unstar it), but not delete
# or flag the owner's mail; purging is the owner's.
_PUBLIC_UNSTARRED = {
    Action.READ: {ANON, "alice", "bob"},
    Action.DELETE: {ANON, "alice", "bob"},
    Action.STAR: {"alice", "bob"},
    Action.FLAG: {"alice", "bob"},
    Action.PURGE: set(),
}
_PUBLIC_STARRED_BY_ALICE = {
    Action.READ: {"alice"},
    Action.DELETE: {"alice"},
    Action.STAR: {"alice"},
    Action.FLAG: {"alice"},
    Action.PURGE: set(),
}
_PUBLIC_STARRED_BY_BOB = {
    Action.READ: {"bob"},
    Action.DELETE: {"bob"},
    Action.STAR: {"bob"},
    Action.FLAG: {"bob"},
    Action.PURGE: set(),
}
_OWNED_UNSTARRED = {
    Action.READ: {"alice"},
    Action.DELETE: {"alice"},
    Action.STAR: {"alice"},
    Action.FLAG: {"alice"},
    Action.PURGE: {"alice"},
}
_OWNED_STARRED_BY_OWNER = _OWNED_UNSTARRED
_OWNED_STARRED_BY_BOB = {
    Action.READ: {"alice", "bob"},
    Action.DELETE: {"alice"},
    Action.STAR: {"alice", "bob"},
    Action.FLAG: {"alice"},
    Action.PURGE: {"alice"},
}

EXPECTED = {
    ("public", None): _PUBLIC_UNSTARRED,
    ("public", "alice"): _PUBLIC_STARRED_BY_ALICE,
    ("public", "bob"): _PUBLIC_STARRED_BY_BOB,
    ("alice", None): _OWNED_UNSTARRED,
    ("alice", "alice"): _OWNED_STARRED_BY_OWNER,
    ("alice", "bob"): _OWNED_STARRED_BY_BOB,
    ("aliceImplicit", None): _OWNED_UNSTARRED,
    ("aliceImplicit", "alice"): _OWNED_STARRED_BY_OWNER,
    ("aliceImplicit", "bob"): _OWNED_STARRED_BY_BOB,
}

# owner kind -> publicReadable -> viewer -> the expected Visibility.
EXPECTED_VISIBILITY: dict[str, dict[bool, dict[str | None, Visibility | None]]] = {
    "public": {
        True: {
            None: Visibility(everything=False, starredBy=None),
            "alice": Visibility(everything=False, starredBy="alice"),
            "bob": Visibility(everything=False, starredBy="bob"),
        },
        False: {
            None: None,
            "alice": Visibility(everything=False, starredBy="alice"),
            "bob": Visibility(everything=False, starredBy="bob"),
        },
    },
    "alice": {
        readable: {None: None, "alice": Visibility(everything=True), "bob": None}
        for readable in (True, False)
    },
    "aliceImplicit": {
        readable: {None: None, "alice": Visibility(everything=True), "bob": None}
        for readable in (True, False)
    },
}


def _allowed(entry: set[str], viewer: str | None, publicReadable: bool) -> bool:
    if viewer is None:
        return ANON in entry and publicReadable
    return viewer in entry


def _cases() -> list[tuple[str | None, str, str | None, object, bool]]:
    return list(
        itertools.product(VIEWERS, OWNERS, SAVED_BY, ACTIONS, (True, False))
    )


def test_tableCoversEveryAction() -> None:
    """
    The expectation table names every L{Action}, so a new action cannot be
    added without deciding who may do it.
    """
    assert {a.name for a in ACTIONS} == {"READ", "DELETE", "STAR", "FLAG", "PURGE"}
    for row in EXPECTED.values():
        assert set(row) == set(ACTIONS)


@pytest.mark.parametrize(
    "viewer, ownerKind, savedBy, action, publicReadable",
    _cases(),
    ids=lambda v: str(getattr(v, "name", v)),
)
def test_permitsMatchesTable(
    viewer: str | None,
    ownerKind: str,
    savedBy: str | None,
    action: object,
    publicReadable: bool,
) -> None:
    """
    L{permits} answers exactly as the hand-written table says, for every
    viewer, inbox owner, starring account, action and public-read setting.
    """
    expected = _allowed(EXPECTED[ownerKind, savedBy][action], viewer, publicReadable)
    got = permits(viewer, action, OWNERS[ownerKind], savedBy, publicReadable)
    assert got is expected


def test_permitsAnonymousNeverWritesOrStars() -> None:
    """
    Without a key nobody stars, flags or purges anything, whatever the
    inbox and settings: those need an account.
    """
    for owner, savedBy, readable in itertools.product(
        OWNERS.values(), SAVED_BY, (True, False)
    ):
        for action in (Action.STAR, Action.FLAG, Action.PURGE):
            assert not permits(None, action, owner, savedBy, readable)


def test_permitsPublicReadableOnlyAffectsAnonymous() -> None:
    """
    Turning off keyless public reads changes nothing for a viewer with a
    key.
    """
    for viewer, owner, savedBy, action in itertools.product(
        ("alice", "bob"), OWNERS.values(), SAVED_BY, ACTIONS
    ):
        assert permits(viewer, action, owner, savedBy, True) == permits(
            viewer, action, owner, savedBy, False
        )


@pytest.mark.parametrize("ownerKind", list(OWNERS))
@pytest.mark.parametrize("publicReadable", [True, False])
@pytest.mark.parametrize("viewer", VIEWERS)
def test_visibilityMatchesTable(
    viewer: str | None, ownerKind: str, publicReadable: bool
) -> None:
    """
    L{visibility} gives the listing the hand-written table expects: the
    owner sees everything, others see unstarred plus their own starred mail
    of a public inbox, and nothing of someone else's inbox.
    """
    got = visibility(viewer, OWNERS[ownerKind], publicReadable)
    assert got == EXPECTED_VISIBILITY[ownerKind][publicReadable][viewer]


@pytest.mark.parametrize("ownerKind", list(OWNERS))
@pytest.mark.parametrize("publicReadable", [True, False])
@pytest.mark.parametrize("viewer", VIEWERS)
def test_visibilityAgreesWithPermits(
    viewer: str | None, ownerKind: str, publicReadable: bool
) -> None:
    """
    For every inbox L{visibility} opens to a viewer, a copy is in the
    listing exactly when L{permits} lets the viewer read it, whoever starred
    it (including an account that is neither viewer nor owner).  For an
    inbox it keeps closed, no unstarred copy is readable either.
    """
    owner = OWNERS[ownerKind]
    vis = visibility(viewer, owner, publicReadable)
    if vis is None:
        assert not permits(viewer, Action.READ, owner, None, publicReadable)
        return
    for savedBy in (*SAVED_BY, "carol"):
        assert visibleTo(vis, savedBy) == permits(
            viewer, Action.READ, owner, savedBy, publicReadable
        ), savedBy


def test_visibleToStarredFilter() -> None:
    """
    L{visibleTo} with a viewer's starred filter admits unstarred copies and
    the viewer's own, and no other account's; with C{everything} it admits
    all.
    """
    mine = Visibility(everything=False, starredBy="alice")
    assert visibleTo(mine, None)
    assert visibleTo(mine, "alice")
    assert not visibleTo(mine, "bob")
    anonymous = Visibility(everything=False, starredBy=None)
    assert visibleTo(anonymous, None)
    assert not visibleTo(anonymous, "alice")
    everything = Visibility(everything=True)
    assert all(visibleTo(everything, s) for s in (None, "alice", "bob"))
