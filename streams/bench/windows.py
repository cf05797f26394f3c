"""The bench's zones + windows line (issue 22 "Done when"): what send windows cost.

`retention bench` (streams/cli/bench.py) runs one worker on the sample with every
customer in a zone (most of them; some without one, a few with a name tzdata does
not know) and the default rules with a file-default send window
(docs/send-windows.md), between two runs without either on the same sample less its
zones.  The figure is per-message CPU, windows on / off, measured in the same run;
the two runs without windows give the noise it is read against.
"""

from __future__ import annotations

from typing import Any

from agents.core.rules import default_text
from streams.feed.sample_options import WORLD_ZONES, SampleOptions

# Customers' zones as the e2e test draws them (tests/e2e/test_send_windows.py).
ZONED = SampleOptions(zones=WORLD_ZONES, zoneless_share=0.08, invalid_zone_share=0.02)
DEFAULT_ZONE = "Europe/Berlin"
# Daytime on weekdays, shorter hours at weekends; deferred up to 36 hours.
WINDOW_TABLE = """
[send_window]
windows = [
  { days = "weekdays", open = "09:00", close = "20:00" },
  { days = "weekends", open = "10:00", close = "18:00" },
]
policy = "defer"
max_delay = "PT36H"
"""


def windows_rules_text() -> str:
    """The default rules file with a default zone and a file-default send window."""
    text = default_text()
    head, sep, rest = text.partition("format = 1\n")
    assert sep, "the default rules file starts with its format line"
    # A top-level key must come before the first table; the window table goes last.
    return f'{head}{sep}default_timezone = "{DEFAULT_ZONE}"\n{rest.rstrip()}\n{WINDOW_TABLE}'


def cpu_figures(
    messages: int, off_cpu: float, on_cpu: float, off_again_cpu: float
) -> dict[str, Any]:
    """Per-message CPU with windows off (twice) and on, the ratio on / off (the mean
    of the two off runs) and the noise: how far apart the two off runs are."""
    per = [cpu / max(1, messages) * 1e6 for cpu in (off_cpu, on_cpu, off_again_cpu)]
    off_mean = (per[0] + per[2]) / 2
    return {
        "off_us_per_message": round(per[0], 1),
        "on_us_per_message": round(per[1], 1),
        "off_again_us_per_message": round(per[2], 1),
        "ratio_on_to_off": round(per[1] / off_mean, 3) if off_mean else None,
        "noise_off_runs": round(abs(per[2] - per[0]) / off_mean, 3) if off_mean else None,
    }
