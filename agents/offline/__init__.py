"""Offline (batch) computations over an event file: the reference the stream is tested against.

Pure Python: nothing here imports Faust, Kafka or Redis.
"""

from agents.offline.judgment import Firing, Verdict
from agents.offline.reference import (
    CustomerFacts,
    ReferenceResult,
    compute_decisions,
)

__all__ = ["CustomerFacts", "Firing", "ReferenceResult", "Verdict", "compute_decisions"]
