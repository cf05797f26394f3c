"""The bench's churn_risk line (issue 23 "Done when"): what the churn_risk rule costs.

`retention bench` (streams/cli/bench.py) fits MBG/NBD on the bench's own sample
(`retention model fit`'s code, docs/prediction.md "Fitting"), then runs one worker on
the sample with the default rules plus a churn_risk ladder (0.6 / 0.4 / 0.2) and that
``[model]``, alternating with runs of the default rules alone on the same sample
(without, with, without, with, without).  The figure is per-message CPU, rule on /
off (the means), read against the spread of the runs without it.
"""

from __future__ import annotations

from collections.abc import Iterable

from agents.core.rules import default_text

# The ladder of docs/prediction.md "The churn_risk rule", between second_purchase and
# inactivity.
CHURN_RULE = """
[[rule]]
name = "churn_risk"
priority = 25
reason = "{rule} step {step}: {span} after the last order on {anchor_date}"
anchor = "last_order"
model = "mbgnbd"
steps = [{ p_alive_below = 0.6 }, { p_alive_below = 0.4 }, { p_alive_below = 0.2 }]
"""


def churn_rules_text(lines: Iterable[bytes], until: int, max_bytes: int, earliest: int) -> str:
    """The default rules file plus the churn_risk ladder and the ``[model]`` fitted
    (time unit: day) on the purchases of ``lines`` up to ``until``."""
    # Imported here: scipy takes a second or so to load, which the bench pays only
    # when it runs this line.
    from streams.model.fit import fit_document, render_toml
    from streams.model.history import read_history

    history = read_history(lines, until=until, max_bytes=max_bytes, earliest=earliest)
    doc = fit_document(history, until=until, unit="day", fitted_at=until)
    return f"{default_text().rstrip()}\n{CHURN_RULE}\n{render_toml(doc)}"
