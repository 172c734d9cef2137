"""Error codes of the recommendations."""

from __future__ import annotations

from apps.core.errors import Conflict


class RecommendationResolved(Conflict):
    code = "recommendation_resolved"
    default_message = "This finding is resolved: the last compute no longer found it."
