"""``kafka-jars.lock`` is exactly what Maven resolves for ``kafka-pom.xml`` (when mvn is here).

The direct download (no mvn) fetches only what the lock lists, so a POM change
that is not followed by ``python -m streams.local.kafka --lock`` fails here.
"""

from __future__ import annotations

import pytest

from streams.local.jars import maven_resolution, read_lock
from streams.local.prereqs import find_mvn

pytestmark = pytest.mark.integration


def test_lock_equals_the_poms_runtime_closure_with_the_same_checksums() -> None:
    mvn = find_mvn()
    if mvn is None:
        pytest.skip("mvn is not on the PATH: nothing to compare the lock with")

    resolved = maven_resolution(mvn.path)

    locked = sorted(read_lock(), key=lambda jar: jar.coordinates)
    assert [j.coordinates for j in locked] == [j.coordinates for j in resolved]
    assert [j.sha1 for j in locked] == [j.sha1 for j in resolved]
