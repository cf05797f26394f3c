"""IANA time zones read from the pinned ``tzdata`` package only (docs/send-windows.md
"Zones").

``zoneinfo.ZoneInfo(name)`` reads the host's ``/usr/share/zoneinfo`` before the
``tzdata`` package, so two workers on hosts with different zone data could put
the same instant in different local hours and disagree on a send window.  Here
a zone is built from the package's own file (``ZoneInfo.from_file``), so the
answer depends on the pinned ``tzdata`` version alone (:data:`TZDATA_VERSION`),
whatever the host holds.

A name is accepted only if it is in the package's list of zones (``tzdata/zones``:
the canonical names and their links such as ``US/Eastern``), at most
:data:`MAX_ZONE_NAME` characters of ``A-Z a-z 0-9 / _ + -``.  ``Factory`` (tzdata's
placeholder for "no zone set") and the files that are not zones (``posixrules``,
``zone.tab``, ``leapseconds``, ``tzdata.zi``) are refused, and so is any path such
as ``../../etc/passwd``: it is not in the list and its dots are not in the charset.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import TypeGuard
from zoneinfo import ZoneInfo

import tzdata

# The IANA release the zones come from (e.g. "2026f"), for /metrics: two workers
# that show the same version put every instant in the same local hour.
TZDATA_VERSION: str = tzdata.IANA_VERSION
# The longest name in tzdata is 32 characters; anything much longer is not a zone.
MAX_ZONE_NAME = 64
_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*", re.ASCII)
# tzdata's placeholder zone (abbreviation "-00"): a customer's zone is unknown, not this.
_REFUSED = frozenset({"Factory"})
# Room for every zone tzdata lists (598 names in 2026f) with some to spare: the
# cache never evicts in practice and can never grow past this.
_CACHE_SIZE = 1024


@functools.cache
def zone_names() -> frozenset[str]:
    """Every name :func:`load_zone` accepts: tzdata's list of zones less ``Factory``."""
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(n for n in listed.split() if n not in _REFUSED and valid_zone_name(n))


def valid_zone_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` has the shape of a zone name (not whether tzdata has it)."""
    return isinstance(name, str) and len(name) <= MAX_ZONE_NAME and bool(_NAME.fullmatch(name))


def load_zone(name: object) -> ZoneInfo | None:
    """The zone called ``name`` from the pinned tzdata, or None for an unknown or
    malformed name (never an exception: a bad zone must not cost the event)."""
    if isinstance(name, str):
        # The hot path: ingest and every firing with a window ask again for the
        # same few names (docs/benchmarks.md "Where the send windows' cost goes").
        known = _LOADED.get(name)
        if known is not None:
            return known
    if not valid_zone_name(name) or name not in zone_names():
        return None
    zone = _load(name)
    if zone is not None:
        # Only names tzdata lists get here, so this holds at most ~600 entries.
        _LOADED[name] = zone
    return zone


_LOADED: dict[str, ZoneInfo] = {}


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load(name: str) -> ZoneInfo | None:
    # One object per name: ZoneInfo.from_file does not cache, and datetime treats two
    # ZoneInfo objects for the same zone as different zones.
    try:
        with resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).open("rb") as f:
            return ZoneInfo.from_file(f, key=name)
    except (OSError, ValueError):
        return None
