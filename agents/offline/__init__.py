"""Offline (batch) computations over an event file: the reference the stream is tested against.

Pure Python: nothing here imports Faust, Kafka or Redis.
"""

from agents.offline.reference import (
    CustomerFacts,
    Firing,
    ReferenceResult,
    Verdict,
    compute_decisions,
)

__all__ = ["CustomerFacts", "Firing", "ReferenceResult", "Verdict", "compute_decisions"]
