"""
What `pip install .` ships: setup.cfg lists its packages by hand, so a new
package must be added there or a non-editable install breaks.
"""

from __future__ import annotations

import configparser
import os

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
