"""The direct jar download (no mvn): lock file, Maven layout, checksum checks, cache marker.

The repository is a dict served by a fake ``fetch``; the real download of the
locked jars is exercised by tests/integration/test_bare_machine.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from streams.local.jars import (
    KAFKA_VERSION,
    MARKER,
    LockedJar,
    download_jars,
    ensure_jars,
    jar_source,
    jars_ready,
    read_lock,
)
from streams.local.procs import LocalStackError

REPO = "http://127.0.0.1:1/maven2"


def _jar(artifact: str, data: bytes, group: str = "org.example.lib") -> LockedJar:
    return LockedJar(group, artifact, "1.0", hashlib.sha1(data).hexdigest())


def _repository(jars: dict[LockedJar, bytes]) -> dict[str, bytes]:
    served: dict[str, bytes] = {}
    for jar, data in jars.items():
        served[f"{REPO}/{jar.path}"] = data
        served[f"{REPO}/{jar.path}.sha1"] = f"{jar.sha1}  {jar.filename}\n".encode()
    return served


def test_lock_is_the_kafka_broker_closure_with_sha1_per_jar() -> None:
    jars = read_lock()
    assert len(jars) == 57
    names = {jar.filename for jar in jars}
    assert f"kafka_2.13-{KAFKA_VERSION}.jar" in names
    assert f"kafka-clients-{KAFKA_VERSION}.jar" in names
    assert {"slf4j-reload4j-1.7.36.jar", "reload4j-1.2.25.jar"} <= names
    assert len(names) == len(jars)  # one file name per jar: they share one libs folder
    assert all(len(jar.sha1) == 40 and int(jar.sha1, 16) >= 0 for jar in jars)


def test_maven_layout_path() -> None:
    jar = LockedJar("org.apache.kafka", "kafka_2.13", "3.9.2", "0" * 40)
    assert jar.path == "org/apache/kafka/kafka_2.13/3.9.2/kafka_2.13-3.9.2.jar"


def test_download_fetches_every_jar_and_verifies_it(tmp_path: Path) -> None:
    a, b = _jar("a", b"jar a"), _jar("b", b"jar b")
    served = _repository({a: b"jar a", b: b"jar b"})
    asked: list[str] = []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return served[url]

    assert download_jars(tmp_path / "libs", [a, b], repository=REPO, fetch=fetch) == 2

    assert (tmp_path / "libs" / "a-1.0.jar").read_bytes() == b"jar a"
    assert (tmp_path / "libs" / "b-1.0.jar").read_bytes() == b"jar b"
    assert sorted(asked) == sorted(served)
    assert sorted(p.name for p in (tmp_path / "libs").iterdir()) == ["a-1.0.jar", "b-1.0.jar"]


def test_tampered_jar_is_a_clear_error_and_nothing_is_cached(tmp_path: Path) -> None:
    good = b"the real jar"
    jar = _jar("lib", good)
    served = _repository({jar: good})
    served[f"{REPO}/{jar.path}"] = b"something else"  # the .sha1 still says the real one
    lock = tmp_path / "kafka-jars.lock"
    lock.write_text(f"# test lock\n{jar.coordinates} {jar.sha1}\n")
    cache = tmp_path / "jars" / "kafka-x"

    with pytest.raises(LocalStackError) as caught:
        ensure_jars(
            cache,
            mvn=None,
            fetch=lambda url: served[url],
            lock=lock,
            repository=REPO,
        )

    message = str(caught.value)
    assert "checksum mismatch for org.example.lib:lib:1.0" in message
    assert jar.sha1 in message and hashlib.sha1(b"something else").hexdigest() in message
    assert not cache.exists()  # no marker, no half-filled libs: the next run starts over


def test_published_sha1_disagreeing_with_the_lock_is_refused(tmp_path: Path) -> None:
    data = b"jar"
    jar = _jar("lib", data)
    served = _repository({jar: data})
    served[f"{REPO}/{jar.path}.sha1"] = b"f" * 40

    with pytest.raises(LocalStackError, match=r"the published \.sha1 says f{40}"):
        download_jars(tmp_path, [jar], repository=REPO, fetch=lambda url: served[url])
    assert list(tmp_path.iterdir()) == []


def test_unreachable_repository_names_the_url(tmp_path: Path) -> None:
    jar = _jar("lib", b"x")

    with pytest.raises(LocalStackError, match=r"could not download http://127\.0\.0\.1:1/"):
        download_jars(tmp_path / "libs", [jar], repository=REPO)


def test_direct_download_marks_the_cache_as_direct(tmp_path: Path) -> None:
    data = b"kafka"
    jar = LockedJar("org.apache.kafka", "kafka_2.13", "9.9", hashlib.sha1(data).hexdigest())
    served = _repository({jar: data})
    lock = tmp_path / "kafka-jars.lock"
    lock.write_text(f"{jar.coordinates} {jar.sha1}\n")
    cache = tmp_path / "kafka-9.9"

    libs = ensure_jars(cache, mvn=None, fetch=lambda url: served[url], lock=lock, repository=REPO)

    assert (libs / "kafka_2.13-9.9.jar").read_bytes() == data
    assert jars_ready(cache)
    assert jar_source(cache) == "direct"
    assert json.loads((cache / MARKER).read_text())["jars"] == 1
    # Cached: a second call fetches nothing.
    assert ensure_jars(cache, mvn=None, fetch=lambda url: pytest.fail(url), lock=lock) == libs


def test_malformed_lock_line_is_named(tmp_path: Path) -> None:
    lock = tmp_path / "kafka-jars.lock"
    lock.write_text("org.example:lib:1.0\n")
    with pytest.raises(LocalStackError, match=r"kafka-jars.lock:1: expected"):
        read_lock(lock)
