"""Zones come from the pinned tzdata package only (docs/send-windows.md "Zones")."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import tzdata

from agents.core import zones
from agents.core.zones import TZDATA_VERSION, load_zone, zone_names


def test_a_known_zone_gives_its_local_time() -> None:
    berlin = load_zone("Europe/Berlin")
    assert berlin is not None
    summer = datetime(2026, 7, 1, 12, tzinfo=UTC).astimezone(berlin)
    assert summer.utcoffset() == timedelta(hours=2)
    assert load_zone("Asia/Kathmandu") is not None
    kathmandu = load_zone("Asia/Kathmandu")
    assert kathmandu is not None
    noon = datetime(2026, 1, 1, 12, tzinfo=UTC).astimezone(kathmandu)
    assert (noon.hour, noon.minute) == (17, 45)


def test_links_and_utc_are_zones() -> None:
    assert load_zone("US/Eastern") is not None
    assert load_zone("UTC") is not None
    assert load_zone("Etc/GMT+5") is not None


@pytest.mark.parametrize(
    "name",
    [
        "Mars/Olympus_Mons",  # unknown
        "europe/berlin",  # names are case-sensitive, as in tzdata
        "",
        " Europe/Berlin",
        "Europe/Berlin\n",
        "Europe//Berlin",
        "/Europe/Berlin",
        "../../etc/passwd",
        "Europe/../../../../etc/passwd",
        "/etc/passwd",
        "posixrules",  # in many zoneinfo trees, not a zone
        "Factory",  # tzdata's placeholder for "no zone"
        "zone.tab",
        "tzdata.zi",
        "leapseconds",
        "__init__.py",
        "Europe",  # a folder
        "A" * 65,
        "Europe/" + "B" * 200,
        "Europe/Berlin\x00",
        None,
        42,
        b"Europe/Berlin",
    ],
)
def test_an_unknown_or_malformed_name_is_none_not_an_error(name: object) -> None:
    assert load_zone(name) is None


def test_every_listed_name_loads_and_the_same_object_comes_back() -> None:
    names = zone_names()
    assert len(names) > 500
    assert "Factory" not in names and "posixrules" not in names
    for name in sorted(names):
        zone = load_zone(name)
        assert zone is not None, name
        assert load_zone(name) is zone  # cached: one object per zone
        assert str(zone) == name


def test_the_host_zoneinfo_is_not_read(tmp_path: Path) -> None:
    """A host whose zoneinfo says Berlin is UTC+5 all year changes nothing here,
    though ``zoneinfo.ZoneInfo`` itself reads it first."""
    bogus = tmp_path / "zoneinfo"
    (bogus / "Europe").mkdir(parents=True)
    utc5 = load_zone("Etc/GMT-5")  # POSIX sign: Etc/GMT-5 is UTC+5
    assert utc5 is not None
    source = Path(tzdata.__file__).parent / "zoneinfo" / "Etc" / "GMT-5"
    (bogus / "Europe" / "Berlin").write_bytes(source.read_bytes())
    (bogus / "Mars").mkdir()
    (bogus / "Mars" / "Base").write_bytes(source.read_bytes())
    zones._load.cache_clear()
    try:
        zoneinfo.reset_tzpath([str(bogus)])
        zoneinfo.ZoneInfo.clear_cache()
        july = datetime(2026, 7, 1, 12, tzinfo=UTC)
        assert july.astimezone(zoneinfo.ZoneInfo("Europe/Berlin")).utcoffset() == timedelta(
            hours=5
        )  # what a host-reading zone would say
        berlin = load_zone("Europe/Berlin")
        assert berlin is not None
        assert july.astimezone(berlin).utcoffset() == timedelta(hours=2)
        assert load_zone("Mars/Base") is None  # a host-only file is no zone
    finally:
        zoneinfo.reset_tzpath()
        zoneinfo.ZoneInfo.clear_cache()
        zones._load.cache_clear()


def test_the_version_is_the_packages_iana_release() -> None:
    assert TZDATA_VERSION == tzdata.IANA_VERSION
    assert TZDATA_VERSION[:4].isdigit() and TZDATA_VERSION[4:].isalpha()


def test_the_pin_is_exact_and_is_the_installed_version() -> None:
    """A second worker installed from the same pyproject gets the same zone rules."""
    import tomllib
    from importlib.metadata import version

    root = Path(__file__).resolve().parents[4]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if d.startswith("tzdata")]
    assert pins == [f"tzdata=={version('tzdata')}"]
