"""The bench's zones + windows line (issue 22 "Done when"): what send windows cost.

`retention bench` (streams/cli/bench.py) runs one worker on the sample with every
customer in a zone (most of them; some without one, a few with a name tzdata does
not know) and the default rules with a file-default send window
(docs/send-windows.md), alternating with runs without either on the same sample less
its zones (without, with, without, with, without).  The figure is per-message CPU,
windows on / off (the means), measured in the same run; the spread of the runs
without windows is the noise it is read against.
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


def cpu_figures(messages: int, off_cpu: list[float], on_cpu: list[float]) -> dict[str, Any]:
    """Per-message CPU of each run without windows and with, the ratio of their means
    (on / off) and the noise: the spread of the runs without, over their mean."""
    off = [cpu / max(1, messages) * 1e6 for cpu in off_cpu]
    on = [cpu / max(1, messages) * 1e6 for cpu in on_cpu]
    off_mean = sum(off) / len(off) if off else 0.0
    on_mean = sum(on) / len(on) if on else 0.0
    return {
        "off_us_per_message": [round(x, 1) for x in off],
        "on_us_per_message": [round(x, 1) for x in on],
        "ratio_on_to_off": round(on_mean / off_mean, 3) if off_mean else None,
        "noise_off_runs": round((max(off) - min(off)) / off_mean, 3) if off_mean else None,
    }
