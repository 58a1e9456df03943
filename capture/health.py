# -*- test-case-name: tests.test_metrics -*-
"""
Readiness: whether this process can serve now, for C{GET /readyz}.

Liveness (C{/livez}) only says the reactor answers; readiness also asks the
store for a trivial read, with a deadline, and checks that every listener
is bound, so a load balancer or an orchestrator stops sending clients to a
process whose store is stopped, stuck or gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, TimeoutError

from capture.store.errors import StoreError
from capture.store.interface import IHealthStore

OK = "ok"


@attrs.frozen
class Report:
    """
    The outcome of one readiness check.

    @ivar checks: Check name to C{"ok"} or what is wrong, in the order run.
    """

    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(result == OK for result in self.checks.values())

    @property
    def failed(self) -> list[str]:
        """
        C{"name: problem"} for every failed check.
        """
        return [f"{name}: {result}" for name, result in self.checks.items() if result != OK]


@attrs.define
class Readiness:
    """
    The checks of C{/readyz}.

    @ivar timeout: Seconds the store has to answer its trivial read.
    @ivar clock: What the deadline runs on (the reactor).
    """

    store: IHealthStore
    clock: Any = None
    timeout: float = 2.0
    _listeners: dict[str, Callable[[], bool]] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if self.clock is None:
            from twisted.internet import reactor

            self.clock = reactor

    def listener(self, name: str, bound: Callable[[], bool]) -> None:
        """
        Check, at each readiness check, that the listener C{name} is bound.
        """
        self._listeners[name] = bound

    async def check(self) -> Report:
        checks = {}
        try:
            await self.store.ping().addTimeout(self.timeout, self.clock)
            checks["store"] = OK
        except (TimeoutError, CancelledError):
            checks["store"] = f"no answer to a read within {self.timeout:g} s"
        except StoreError as e:
            checks["store"] = str(e) or type(e).__name__
        for name, bound in self._listeners.items():
            checks[f"listener {name}"] = OK if bound() else "not listening"
        return Report(checks)
