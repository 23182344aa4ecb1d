"""The read side: questions answered from the log alone."""

from gitops.query.status import diff_at

__all__ = ["diff_at"]
