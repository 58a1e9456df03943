"""
What `pip install .` ships: setup.cfg lists its packages by hand, so a new
package must be added there or a non-editable install breaks.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_everyPackageIsListed() -> None:
    """
    Every directory of C{capture/} holding Python modules or SQL is in
    setup.cfg's C{packages} (an editable install would hide the omission;
    C{pip install .} would ship a Capture that cannot import it).
    """
    config = configparser.ConfigParser()
    config.read(os.path.join(_ROOT, "setup.cfg"))
    listed = set(config["options"]["packages"].split())
    found = set()
    for directory, _, files in os.walk(os.path.join(_ROOT, "capture")):
        if "__pycache__" in directory:
            continue
        if any(f.endswith((".py", ".sql")) for f in files):
            found.add(os.path.relpath(directory, _ROOT).replace(os.sep, "."))
    assert found <= listed, sorted(found - listed)


def test_everyModuleImportsFirst() -> None:
    """
    Every module of C{capture} imports on its own, first, in a fresh
    interpreter: an import cycle shows only when the module in the cycle
    is the first one imported (C{capture.events} and C{capture.store}
    were one), which a test run that imports everything in one order hides.
    """
    modules = []
    for directory, _, files in os.walk(os.path.join(_ROOT, "capture")):
        if "__pycache__" in directory:
            continue
        package = os.path.relpath(directory, _ROOT).replace(os.sep, ".")
        for name in sorted(files):
            if name.endswith(".py"):
                stem = name[:-3]
                modules.append(package if stem == "__init__" else f"{package}.{stem}")
    running = [
        (module, subprocess.Popen(
            [sys.executable, "-c", f"import {module}"], cwd=_ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        ))
        for module in modules
    ]
    failed = {}
    for module, process in running:
        output, _ = process.communicate(timeout=120)
        if process.returncode:
            failed[module] = output.decode("utf-8", "replace").strip().splitlines()[-1]
    assert failed == {}
