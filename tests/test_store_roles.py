"""
The store's role interfaces and its errors: a started backend provides every
role, and a database that cannot be used reaches the store's callers (the
console, the server) as the store's own error, in one line, never as a
C{sqlite3} exception or a traceback.
"""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.testing import MemoryReactor
from twisted.trial import unittest
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject

from capture import tap
from capture.store import hasStoredData, interface, makeStore
from capture.store.errors import SchemaTooNew, StoreError, StoreUnavailable
from capture.store.interface import (
    IAccountStore,
    IHealthStore,
    IMailboxStore,
    IMaintenanceStore,
    IMessageStore,
    IOwnershipStore,
    IStore,
    IStoreLifecycle,
)
from capture.store.sqlite import DATABASE_NAME, SQLiteStore
from tests.harness import CaptureServer

ROLES: list[InterfaceClass] = [
    IStoreLifecycle,
    IAccountStore,
    IOwnershipStore,
    IMessageStore,
    IMailboxStore,
    IMaintenanceStore,
    IHealthStore,
]

# What SQLite says of a file that is not one of its databases.
_CORRUPT = "file is not a database"


@pytest.fixture
def directory() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="capture-roles-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def corrupt(data: Path) -> Path:
    """
    Make C{data} a data directory whose database file is not a database.
    """
    data.mkdir(parents=True, exist_ok=True)
    path = data / DATABASE_NAME
    path.write_bytes(b"this is not an SQLite database\n" * 512)
    return path


class RoleTests(unittest.TestCase):
    """
    The SQLite backend, started, provides each role and their union.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="capture-roles-")
        self.store = makeStore(self.directory, None)
        self.store.start()

    async def tearDown(self) -> None:  # type: ignore[override]
        await self.store.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def test_eachRole(self) -> None:
        """
        C{verifyObject} passes for every role: each method is there with
        the interface's arguments, and C{uidValidity} is set.
        """
        for role in ROLES:
            with self.subTest(role=role.getName()):
                self.assertTrue(verifyObject(role, self.store))
        self.assertIsInstance(self.store.uidValidity, int)
        self.assertGreater(self.store.uidValidity, 0)

    def test_union(self) -> None:
        """
        L{IStore} extends every role and adds nothing of its own, and the
        backend provides it.
        """
        self.assertTrue(verifyObject(IStore, self.store))
        for role in ROLES:
            self.assertTrue(IStore.isOrExtends(role), role)
        self.assertEqual(set(IStore.names()), set())
        self.assertEqual(
            set(IStore.names(all=True)), set().union(*(role.names() for role in ROLES))
        )

    def test_rolesDisjoint(self) -> None:
        """
        No method is in two roles: each has one place, one signature and
        one doc.
        """
        seen: dict[str, str] = {}
        for role in ROLES:
            for name in role.names():
                self.assertNotIn(name, seen, f"{name} in {seen.get(name)} and {role.getName()}")
                seen[name] = role.getName()

    def test_everyMethodTyped(self) -> None:
        """
        Every method of every role says the type of each argument and of
        what it returns (mypy-zope checks the backend against them only
        where they do), and every attribute its type.
        """
        tree = ast.parse(inspect.getsource(interface))
        checked = set()
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef):
                continue
            for item in cls.body:
                if isinstance(item, ast.FunctionDef):
                    arguments = [*item.args.posonlyargs, *item.args.args, *item.args.kwonlyargs]
                    untyped = [a.arg for a in arguments if a.annotation is None]
                    self.assertEqual(untyped, [], f"{cls.name}.{item.name}")
                    self.assertIsNotNone(item.returns, f"{cls.name}.{item.name}")
                    checked.add(item.name)
                elif isinstance(item, ast.Assign):
                    self.fail(f"{cls.name}: untyped attribute {ast.unparse(item.targets[0])}")
                elif isinstance(item, ast.AnnAssign):
                    checked.add(ast.unparse(item.target))
        self.assertEqual(checked, set(IStore.names(all=True)))

    def test_makeStoreIsTheBackend(self) -> None:
        """
        The one factory makes the SQLite backend, and says when a directory
        holds data already.
        """
        self.assertIsInstance(self.store, SQLiteStore)
        self.assertTrue(hasStoredData(self.directory))
        self.assertFalse(hasStoredData(os.path.join(self.directory, "nothing")))


class UnavailableTests(unittest.TestCase):
    """
    What cannot be opened or read is the store's error, from the store.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="capture-roles-")
        self.addCleanup(shutil.rmtree, self.directory, True)

    def test_corruptFile(self) -> None:
        """
        A database file that is not one fails L{IStoreLifecycle.open} with
        L{StoreUnavailable} naming the directory and SQLite's reason.
        """
        corrupt(Path(self.directory))
        store = makeStore(self.directory, None)
        error = self.assertRaises(StoreUnavailable, store.open)
        self.assertEqual(str(error), f"cannot open the data in {self.directory}: {_CORRUPT}")
        self.assertNotIsInstance(error, sqlite3.Error)
        self.assertRaises(StoreUnavailable, store.start)

    def test_dataIsAFile(self) -> None:
        """
        A data directory that is a file (an OS error, not SQLite's) is
        L{StoreUnavailable} too.
        """
        data = os.path.join(self.directory, "data")
        Path(data).write_text("a file\n")
        error = self.assertRaises(StoreUnavailable, makeStore(data, None).start)
        self.assertTrue(str(error).startswith(f"cannot open the data in {data}: "), str(error))

    def test_schemaTooNewIsUnavailable(self) -> None:
        """
        L{SchemaTooNew} is one way of being unavailable: a caller catching
        L{StoreError} (or L{StoreUnavailable}) catches it, with its own
        message.
        """
        self.assertTrue(issubclass(SchemaTooNew, StoreUnavailable))
        self.assertTrue(issubclass(StoreUnavailable, StoreError))

    async def test_writerCannotConnect(self) -> None:
        """
        When the writer cannot connect, L{IStoreLifecycle.start} raises
        L{StoreUnavailable} (the writer thread does not die with every
        write left waiting), and stopping is still safe.
        """
        store = makeStore(self.directory, None)
        store.open()
        path = os.path.join(self.directory, DATABASE_NAME)
        os.remove(path)
        os.mkdir(path)
        error = self.assertRaises(StoreUnavailable, store.start)
        self.assertIn("unable to open database file", str(error))
        await store.stop()

    async def test_readerCannotConnect(self) -> None:
        """
        A read thread that cannot connect fails the read with
        L{StoreError}, not C{sqlite3.OperationalError}.
        """
        store = makeStore(self.directory, None)
        store.start()
        self.addCleanup(store.stop)
        # The writer is connected; no reader is yet.
        path = os.path.join(self.directory, DATABASE_NAME)
        os.remove(path)
        os.mkdir(path)
        try:
            await store.ping()
        except StoreError as e:
            self.assertNotIsInstance(e, sqlite3.Error)
            self.assertIn("unable to open database file", str(e))
        else:
            self.fail("the read did not fail")


# The console and the server on a corrupt file


def test_cliCorruptFile(directory: Path) -> None:
    """
    C{capture account list} on a corrupt database prints one line naming
    the data directory and the reason, and exits 1, with no traceback.
    """
    offline = CaptureServer(directory=str(directory))
    corrupt(Path(offline.data))
    result = offline.cli("account", "list", check=False)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"capture: cannot open the data in {offline.data}: {_CORRUPT}\n"


def test_cliDataIsAFile(directory: Path) -> None:
    """
    C{capture account create} with C{--data} naming a file: one line, exit
    status 1.
    """
    offline = CaptureServer(directory=str(directory))
    Path(offline.data).write_text("a file\n")
    result = offline.cli("account", "create", "ann", check=False)
    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"capture: cannot open the data in {offline.data}: ")


def test_makeServiceCorruptFile(directory: Path) -> None:
    """
    C{makeService} on a corrupt database stops with one line (SystemExit),
    as for data written by a newer Capture.
    """
    corrupt(directory / "data")
    options = tap.Options()
    options.parseOptions(
        ["--data", str(directory / "data"), "--tls-dir", str(directory / "tls")]
    )
    with pytest.raises(SystemExit) as raised:
        tap.makeService(options, MemoryReactor())
    assert str(raised.value.code) == (
        f"capture: cannot open the data in {directory / 'data'}: {_CORRUPT}"
    )


def test_twistdCorruptFile(directory: Path) -> None:
    """
    The real C{twistd capture} on a corrupt database exits non-zero before
    listening, with that one line in its log and no traceback.
    """
    server = CaptureServer(directory=str(directory))
    corrupt(Path(server.data))
    with pytest.raises(RuntimeError):
        server.start()
    assert server.process is not None and server.process.returncode not in (0, None)
    log = server.log()
    wanted = f"capture: cannot open the data in {server.data}: {_CORRUPT}"
    assert [line for line in log.splitlines() if line.endswith(wanted)], log
    assert "Traceback" not in log and "listening on" not in log
