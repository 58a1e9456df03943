"""
The event bus: its interface, the in-process bus, and the events as plain
values a bus across processes can carry.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import attrs
from twisted.logger import LogEvent, globalLogPublisher
from zope.interface.verify import verifyObject

from capture.events import (
    ChangedCopies,
    ChangedCopy,
    IEventBus,
    InProcessBus,
    NewCopies,
    RemovedCopies,
)
from capture.mime import Attachment, MailAddress
from capture.store.model import Copy, FlagState, MessageInfo, RemovedCopy


def _copy(uid: int = 7) -> Copy:
    info = MessageInfo(
        rowid=3, queueId="q1", received=1000, account="alice", mailFrom="s@example.com",
        size=120, subject="hi", fromAddresses=(MailAddress("s@example.com", "S"),),
        to=(MailAddress("a@example.com", ""),), cc=(), bcc=(), date=None, messageId="<m@x>",
        links=("https://example.com/",),
        attachments=(Attachment("md5", "a.txt", "text/plain", None, 3, "2"),),
        ip="127.0.0.1", via="smtp", tls=True,
    )
    return Copy(uid, 1, "a@example.com", "a+x@example.com", None, None, False, False, False,
                ("work",), "inbox", info)


def _changed(uid: int = 7, read: bool = True) -> ChangedCopy:
    return ChangedCopy(uid, "q1-1", "a@example.com", "bob", "alice", read, False, False, True,
                       ("$Work",), "inbox")


def test_interface() -> None:
    """
    The in-process bus provides the interface.
    """
    assert verifyObject(IEventBus, InProcessBus())


def test_deliveredByKindInOrder() -> None:
    """
    A subscriber gets the events of the kind it asked for, in the order they
    were published, and nothing after it unsubscribes (twice is harmless).
    """
    bus = InProcessBus()
    added: list[NewCopies] = []
    changed: list[ChangedCopies] = []
    stopAdded = bus.subscribe(NewCopies, added.append)
    bus.subscribe(ChangedCopies, changed.append)
    events = [NewCopies((_copy(1),)), ChangedCopies((_changed(1),)), NewCopies((_copy(2),))]
    for event in events:
        bus.publish(event)
    assert added == [events[0], events[2]]
    assert changed == [events[1]]
    stopAdded()
    stopAdded()
    bus.publish(NewCopies((_copy(3),)))
    assert len(added) == 2


def test_failingSubscriberLoggedOthersCalled() -> None:
    """
    A subscriber that raises is logged; the subscribers after it still get
    the event, and the publisher sees no exception.
    """
    bus = InProcessBus()
    logged: list[LogEvent] = []
    globalLogPublisher.addObserver(logged.append)
    heard: list[RemovedCopies] = []

    def broken(event: RemovedCopies) -> None:
        raise RuntimeError("subscriber bug")

    try:
        bus.subscribe(RemovedCopies, broken)
        bus.subscribe(RemovedCopies, heard.append)
        event = RemovedCopies((RemovedCopy(1, "q1-1", "a@example.com", None),))
        bus.publish(event)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert heard == [event]
    failures = [e for e in logged if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
    assert failures[0]["kind"] == "RemovedCopies"


def test_publishedWhileDeliveringKeepsOrder() -> None:
    """
    An event published by a subscriber (a reader that writes) reaches every
    subscriber after the event being delivered, never before it.
    """
    bus = InProcessBus()
    seen: list[tuple[str, int]] = []

    def first(event: ChangedCopies) -> None:
        seen.append(("first", event.copies[0].uid))
        if event.copies[0].uid == 1:
            bus.publish(ChangedCopies((_changed(2),)))

    bus.subscribe(ChangedCopies, first)
    bus.subscribe(ChangedCopies, lambda e: seen.append(("second", e.copies[0].uid)))
    bus.publish(ChangedCopies((_changed(1),)))
    assert seen == [("first", 1), ("second", 1), ("first", 2), ("second", 2)]


def test_unsubscribeDuringDelivery() -> None:
    """
    A subscriber may unsubscribe itself while being called; the others of
    that event are still called.
    """
    bus = InProcessBus()
    seen: list[str] = []
    stops: list[Any] = []

    def once(event: NewCopies) -> None:
        seen.append("once")
        stops[0]()

    stops.append(bus.subscribe(NewCopies, once))
    bus.subscribe(NewCopies, lambda e: seen.append("always"))
    bus.publish(NewCopies((_copy(),)))
    bus.publish(NewCopies((_copy(),)))
    assert seen == ["once", "always", "always"]


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def test_eventsArePlainValues() -> None:
    """
    Every event is a frozen value of primitives and tuples: it becomes JSON
    as it is (what a bus across processes would send), pickles to an equal
    value, and compares by value, not identity.
    """
    events = [
        NewCopies((_copy(),)),
        RemovedCopies((RemovedCopy(7, "q1-1", "a@example.com", "bob"),)),
        ChangedCopies((_changed(),)),
    ]
    for event in events:
        fields = attrs.asdict(event)
        assert _plain(fields), fields
        json.dumps(fields)
        again = pickle.loads(pickle.dumps(event))
        assert again == event and again is not event
        assert attrs.has(type(event)) and type(event).__setattr__ is not object.__setattr__


def test_changedCopyOf() -> None:
    """
    A changed copy made from a stored copy carries its routing facts and its
    state; C{flags} is the IMAP view of that state.
    """
    copy = attrs.evolve(_copy(), savedBy="bob", read=None, flagged=True)
    changed = ChangedCopy.of(copy)
    assert changed == ChangedCopy(7, "q1-1", "a@example.com", "bob", "alice", False, False,
                                  False, True, ("work",), "inbox")
    assert changed.domain == "example.com"
    assert changed.flags == FlagState(7, False, False, False, True, ("work",))
