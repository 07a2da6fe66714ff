"""Third-party packages for a function, the way Lambda and SCF functions carry them: copied
into the function's own files (``pip install --target .`` into the code root), since function
instances never see the console's site-packages (the zygote runs ``python -I -S``)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import sysconfig
from functools import cache
from pathlib import Path

# Installed with pip but not a runtime dependency of anything a function imports.
_NOT_VENDORED = {"_distutils_hack", "setuptools", "pip"}

_IMPORTED_FROM_SITE_PACKAGES = r"""
import importlib, json, sys, sysconfig
for name in sys.argv[1:]:
    importlib.import_module(name)
site = sysconfig.get_paths()["purelib"]
print(json.dumps(sorted({n.split(".")[0] for n, m in list(sys.modules.items())
                         if (getattr(m, "__file__", None) or "").startswith(site)})))
"""


@cache
def _vendored(modules: tuple[str, ...]) -> dict[str, bytes]:
    # What importing ``modules`` really pulls in from site-packages (asked of a fresh
    # interpreter), then every file of the distributions those come from, dist-info included
    # (importlib.metadata.version() must answer inside the function as it does here).
    found = subprocess.run(
        [sys.executable, "-c", _IMPORTED_FROM_SITE_PACKAGES, *modules], capture_output=True, text=True, check=True
    )
    names = set(json.loads(found.stdout)) - _NOT_VENDORED
    owners = importlib.metadata.packages_distributions()
    distributions = {dist for name in names for dist in owners.get(name, [])} - _NOT_VENDORED
    site = sysconfig.get_paths()["purelib"]
    files: dict[str, bytes] = {}
    for dist in sorted(distributions):
        for entry in importlib.metadata.distribution(dist).files or []:
            relative = str(entry)
            # Translations and static assets are not what these tests exercise; leaving them
            # out keeps a Django function at a fifth of its size.
            if relative.startswith("..") or "__pycache__" in relative or relative.endswith((".po", ".mo", ".pyc")):
                continue
            if "/static/" in relative or relative.endswith("RECORD"):
                continue
            located = Path(entry.locate())
            if str(located).startswith(site) and located.is_file():
                files[relative] = located.read_bytes()
    return files


def vendored(*modules: str) -> dict[str, bytes]:
    """The files of the installed distributions that importing ``modules`` needs."""
    return dict(_vendored(tuple(modules)))
