"""Error codes of the plans app (rendered through ``apps.core.errors``)."""

from __future__ import annotations

PLAN_EXISTS = "plan_exists"
PLAN_TERMS_FROZEN = "plan_terms_frozen"
PLAN_HAS_NO_FEATURES = "plan_has_no_features"
PLAN_ARCHIVED = "plan_archived"
PLAN_NOT_DRAFT = "plan_not_draft"
FEATURE_NOT_ON_PLAN = "feature_not_on_plan"
