"""Steps 2 and 4: data-quality gates with Great Expectations Core, run from our own tasks."""

from tierflow.quality.gates import QualityGateFailed, run_gate

__all__ = ["QualityGateFailed", "run_gate"]
