"""The embedded Kafka broker's jars (streams.local.kafka), cached once per machine.

The jars come from Maven Central (``kafka-pom.xml`` next to this file) and are
cached under ``default_home()/jars/kafka-<version>``: with ``mvn`` when it is on
the PATH, else downloaded directly (urllib) from the Maven repository layout, each
jar listed in ``kafka-jars.lock`` (the POM's transitive closure) and checked
against the lock and its published ``.sha1``.  A marker file, which also records
``maven`` or ``direct``, is written only after a complete download, so an
interrupted one is redone.

``python -m streams.local.kafka --fetch`` downloads the jars ahead of time;
``--lock`` rewrites ``kafka-jars.lock`` from Maven's resolution.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from streams.config import default_home
from streams.local.prereqs import find_mvn
from streams.local.procs import LocalStackError, Say, quiet

KAFKA_VERSION = "3.9.2"
POM = Path(__file__).with_name("kafka-pom.xml")
JAR_LOCK = Path(__file__).with_name("kafka-jars.lock")
# Maven Central's standard repository layout; RETENTION_MAVEN_REPOSITORY overrides it.
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
DOWNLOAD_TIMEOUT = 60.0
DOWNLOAD_THREADS = 6
MARKER = ".complete"


def jar_cache_dir(home: Path | None = None) -> Path:
    """``<home>/jars/kafka-<version>``; home defaults to ``default_home()`` (RETENTION_HOME)."""
    return (home or default_home()) / "jars" / f"kafka-{KAFKA_VERSION}"


def jars_ready(cache: Path) -> bool:
    """True when a complete download is in ``cache`` (marker written and jars present)."""
    libs = cache / "libs"
    return (cache / MARKER).is_file() and any(libs.glob("kafka_2.13-*.jar"))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class LockedJar:
    """One jar of the broker's runtime: Maven coordinates and the SHA-1 Maven Central publishes."""

    group: str
    artifact: str
    version: str
    sha1: str

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def path(self) -> str:
        """The jar's path in Maven's standard repository layout."""
        return f"{self.group.replace('.', '/')}/{self.artifact}/{self.version}/{self.filename}"


def read_lock(path: Path = JAR_LOCK) -> list[LockedJar]:
    """The checked-in jar list (``kafka-jars.lock``): ``group:artifact:version sha1`` lines."""
    jars: list[LockedJar] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            coordinates, sha1 = line.split()
            group, artifact, version = coordinates.split(":")
        except ValueError:
            raise LocalStackError(
                f"{path}:{number}: expected 'group:artifact:version sha1'"
            ) from None
        jars.append(LockedJar(group, artifact, version, sha1.lower()))
    return jars


def maven_repository() -> str:
    """Where the direct download fetches from: ``RETENTION_MAVEN_REPOSITORY`` or Maven Central."""
    return os.environ.get("RETENTION_MAVEN_REPOSITORY", MAVEN_CENTRAL).rstrip("/")


Fetch = Callable[[str], bytes]


def _http_get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
            data: bytes = response.read()
            return data
    except (urllib.error.URLError, OSError) as exc:
        raise LocalStackError(f"could not download {url}: {exc}") from None


def _published_sha1(text: str) -> str:
    # A .sha1 file holds the hex digest, sometimes followed by the file name.
    return text.strip().split()[0].lower() if text.strip() else ""


def download_jar(jar: LockedJar, dest: Path, *, repository: str, fetch: Fetch = _http_get) -> None:
    """Fetch one jar and its published ``.sha1``; both must match the lock, else nothing is kept."""
    url = f"{repository}/{jar.path}"
    published = _published_sha1(fetch(url + ".sha1").decode("ascii", errors="replace"))
    data = fetch(url)
    actual = hashlib.sha1(data).hexdigest()
    if published != jar.sha1 or actual != jar.sha1:
        raise LocalStackError(
            f"checksum mismatch for {jar.coordinates} ({url}): kafka-jars.lock says {jar.sha1}, "
            f"the published .sha1 says {published or '(empty)'}, the downloaded jar hashes to "
            f"{actual}; nothing was kept - retry, or check RETENTION_MAVEN_REPOSITORY"
        )
    tmp = dest / f".{jar.filename}.part"
    tmp.write_bytes(data)
    tmp.rename(dest / jar.filename)


def download_jars(
    libs: Path,
    jars: list[LockedJar] | None = None,
    *,
    repository: str | None = None,
    fetch: Fetch = _http_get,
) -> int:
    """Download every locked jar into ``libs`` (a few at a time); returns how many."""
    jars = read_lock() if jars is None else jars
    repository = repository or maven_repository()
    libs.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool:
        for future in [
            pool.submit(download_jar, jar, libs, repository=repository, fetch=fetch) for jar in jars
        ]:
            future.result()
    return len(jars)


def jar_source(cache: Path) -> str:
    """How the cached jars were fetched: ``maven`` or ``direct`` (from the marker)."""
    try:
        data = json.loads((cache / MARKER).read_text())
    except (OSError, ValueError):
        return ""
    return str(data.get("source", "maven")) if isinstance(data, dict) else ""


def ensure_jars(
    cache: Path | None = None,
    *,
    say: Say = quiet,
    mvn: str | bool | None = True,
    fetch: Fetch = _http_get,
    lock: Path = JAR_LOCK,
    repository: str | None = None,
) -> Path:
    """Make sure the broker's jars are cached; returns the ``libs`` folder.

    Downloads only when the marker is missing: with Maven when ``mvn`` is on the
    PATH (``mvn=True``, the default, looks it up; a string is the program;
    ``None``/``False`` skips Maven), else directly from the Maven repository,
    every jar checked against ``kafka-jars.lock`` and its published ``.sha1``.
    Concurrent callers wait for each other (file lock), so two test runs never
    download twice.
    """
    cache = cache or jar_cache_dir()
    libs = cache / "libs"
    if jars_ready(cache):
        return libs
    with _file_lock(cache.parent / f".{cache.name}.lock"):
        if jars_ready(cache):
            return libs
        program = (found.path if (found := find_mvn()) else None) if mvn is True else mvn
        started = time.monotonic()
        shutil.rmtree(cache, ignore_errors=True)
        cache.mkdir(parents=True)
        staging = Path(tempfile.mkdtemp(prefix="libs.", dir=cache))
        try:
            if program:
                say(f"Downloading Apache Kafka {KAFKA_VERSION} jars with Maven into {cache} ...")
                _maven_copy(str(program), staging)
                source = "maven"
            else:
                repository = repository or maven_repository()
                say(
                    f"Downloading Apache Kafka {KAFKA_VERSION} jars from {repository} "
                    f"into {cache} (once, no mvn on the PATH; checksums verified) ..."
                )
                download_jars(staging / "libs", read_lock(lock), repository=repository, fetch=fetch)
                source = "direct"
        except BaseException:
            shutil.rmtree(cache, ignore_errors=True)
            raise
        (staging / "libs").rename(libs)
        shutil.rmtree(staging, ignore_errors=True)
        jars = sorted(p.name for p in libs.glob("*.jar"))
        (cache / MARKER).write_text(
            json.dumps(
                {"kafka": KAFKA_VERSION, "jars": len(jars), "source": source, "at": time.time()}
            )
            + "\n"
        )
        say(f"Downloaded {len(jars)} jars in {time.monotonic() - started:.1f} s.")
    return libs


def _maven_copy(mvn: str, staging: Path) -> None:
    # Run Maven on a copy of the POM so nothing is ever written next to the package.
    pom = staging / "pom.xml"
    shutil.copyfile(POM, pom)
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging / 'libs'}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(
        cmd, cwd=staging, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if result.returncode != 0 or not any((staging / "libs").glob("kafka_2.13-*.jar")):
        output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise LocalStackError(
            f"Maven could not download Apache Kafka {KAFKA_VERSION} "
            f"(exit {result.returncode}); "
            f"check network access to Maven Central.\n{output}"
        )


def maven_resolution(mvn: str) -> list[LockedJar]:
    """What Maven resolves for ``kafka-pom.xml`` (runtime scope), each jar's SHA-1 computed.

    Used to write ``kafka-jars.lock`` (``--lock``) and by the test that holds the
    lock to the POM.
    """
    with tempfile.TemporaryDirectory(prefix="kafka-pom.") as tmp:
        pom = Path(tmp) / "pom.xml"
        shutil.copyfile(POM, pom)
        listing = Path(tmp) / "deps.txt"
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:list",
                "-DincludeScope=runtime",
                f"-DoutputFile={listing}",
                "-DoutputAbsoluteArtifactFilename=true",
            ],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0 or not listing.is_file():
            raise LocalStackError(
                f"mvn dependency:list failed (exit {result.returncode}):\n"
                + "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            )
        jars: list[LockedJar] = []
        for line in listing.read_text().splitlines():
            parts = line.strip().split(" ", 1)[0].split(":")
            if len(parts) < 6 or parts[2] != "jar":
                continue
            group, artifact, _, version, _scope, filename = parts[:6]
            digest = hashlib.sha1(Path(filename).read_bytes()).hexdigest()
            jars.append(LockedJar(group, artifact, version, digest))
    return sorted(jars, key=lambda j: j.coordinates)


def write_lock(jars: list[LockedJar], path: Path = JAR_LOCK) -> None:
    lines = [
        f"# Apache Kafka {KAFKA_VERSION} broker runtime: the transitive closure of",
        "# kafka-pom.xml (runtime scope) as Maven resolves it, one jar a line with the SHA-1",
        "# published next to it in the Maven repository.  Used when mvn is not on the PATH.",
        "# Regenerate (needs mvn): python -m streams.local.kafka --lock",
        *(f"{jar.coordinates} {jar.sha1}" for jar in jars),
        "",
    ]
    path.write_text("\n".join(lines))
