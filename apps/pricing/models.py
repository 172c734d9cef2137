"""The model price catalog (global, versioned) and per-environment negotiated rates.

Catalog: ``PriceProvider`` -> ``PriceModel`` -> ``PriceVersion``. A version is
one distinct price structure of one model, in force from ``effective_from``
until ``effective_to`` (null: in force now). A sync that sees a different price
closes the open version and opens a new one; a version's prices are never
edited. Prices are USD per million tokens (``*_mtok``) or per thousand requests
(``requests_kcount``), exactly as genai-prices gives them.

Overrides: ``ModelPriceOverride`` is tenant data (one environment): either
custom rates for one model, or a discount percent for one model or a whole
provider.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.tenancy import EnvironmentOwned

# Versions loaded from the first sync hold "since ever": genai-prices applies a
# price to any request time, and events recorded before the catalog was loaded
# must be re-costable with it.
CATALOG_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Catalog prices: genai-prices uses up to 18 fractional digits per MTok.
_CATALOG_PRICE: dict[str, Any] = {
    "max_digits": 32,
    "decimal_places": 18,
    "null": True,
    "blank": True,
}
# Override rates per MTok / per request, USD.
_RATE: dict[str, Any] = {"max_digits": 24, "decimal_places": 12, "null": True, "blank": True}


class PriceProvider(models.Model):
    """A provider as genai-prices describes it, with the rules that recognise it."""

    provider_id = models.CharField(max_length=64, unique=True)  # e.g. "openai"
    name = models.CharField(max_length=200)
    api_pattern = models.CharField(max_length=500, blank=True, default="")
    # genai-prices match clauses, in its JSON shape ({"contains": "claude"}, {"or": [...]}).
    model_match = models.JSONField(null=True, blank=True)
    provider_match = models.JSONField(null=True, blank=True)
    fallback_model_providers = models.JSONField(default=list, blank=True)
    pricing_urls = models.JSONField(default=list, blank=True)
    price_comments = models.TextField(blank=True, default="")
    # Matching order matters (the first provider whose rule matches wins), so keep the source's.
    position = models.PositiveIntegerField(default=0)
    # False once the source stops listing it; its models stop matching.
    is_listed = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["position", "provider_id"]

    def __str__(self) -> str:
        return self.provider_id


class PriceModel(models.Model):
    """One model of one provider; its prices live in ``PriceVersion`` rows."""

    provider = models.ForeignKey(PriceProvider, on_delete=models.CASCADE, related_name="models")
    model_id = models.CharField(max_length=200)  # genai-prices' model id, e.g. "gpt-4o"
    name = models.CharField(max_length=200, blank=True, default="")
    description = models.TextField(blank=True, default="")
    # How a model reference (alias, dated snapshot) is recognised: genai-prices clause JSON.
    match = models.JSONField()
    context_window = models.PositiveIntegerField(null=True, blank=True)
    deprecated = models.BooleanField(default=False)
    price_comments = models.TextField(blank=True, default="")
    position = models.PositiveIntegerField(default=0)
    is_listed = models.BooleanField(default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["provider__position", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model_id"], name="pricing_model_provider_model_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.provider_id}/{self.model_id}"


class PriceVersion(models.Model):
    """One distinct price of one model over a time range. History: never edited.

    ``prices`` holds the full structure from the source (the genai-prices JSON
    shape: flat prices, or date / time-of-day conditional prices, context-size
    tiers and request-context variants) and is what costing uses. The columns
    below repeat the main components for display, search and SQL: they are the
    price that was in force when the version was recorded (the base of a tier).
    """

    model = models.ForeignKey(PriceModel, on_delete=models.PROTECT, related_name="versions")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)  # null: in force
    content_hash = models.CharField(max_length=64)  # sha256 of the canonical ``prices`` JSON
    prices = models.JSONField()

    input_mtok = models.DecimalField(**_CATALOG_PRICE)
    output_mtok = models.DecimalField(**_CATALOG_PRICE)
    cache_read_mtok = models.DecimalField(**_CATALOG_PRICE)
    cache_write_mtok = models.DecimalField(**_CATALOG_PRICE)
    input_audio_mtok = models.DecimalField(**_CATALOG_PRICE)
    output_audio_mtok = models.DecimalField(**_CATALOG_PRICE)
    output_reasoning_mtok = models.DecimalField(**_CATALOG_PRICE)
    requests_kcount = models.DecimalField(**_CATALOG_PRICE)  # USD per 1,000 requests
    has_tiers = models.BooleanField(default=False)  # a price changes above a context size
    is_conditional = models.BooleanField(default=False)  # date or time-of-day conditions
    source = models.CharField(max_length=500, blank=True, default="")  # "genai-prices 0.2.3"
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model_id", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "effective_from"], name="pricing_version_model_from_unique"
            ),
            models.UniqueConstraint(
                fields=["model"],
                condition=Q(effective_to__isnull=True),
                name="pricing_version_one_open_per_model",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True)
                | Q(effective_to__gt=models.F("effective_from")),
                name="pricing_version_range_valid",
            ),
        ]
        indexes = [models.Index(fields=["model", "effective_to"], name="pricing_version_open_idx")]

    def __str__(self) -> str:
        return f"version {self.pk} from {self.effective_from:%Y-%m-%d}"


class ModelPriceOverride(EnvironmentOwned):
    """Negotiated rates of one environment.

    Two kinds, exactly one per row:
    * rates: custom USD per MTok for one model (input and output required;
      cache read / write default to the input rate) plus an optional USD price
      per request;
    * discount: a percent off the catalog price, for one model, or for every
      model of a provider (``model`` blank).

    ``provider`` blank on a model row means "whichever provider serves it".
    Provider and model are stored lower-case (matching is case-insensitive).
    """

    class Kind(models.TextChoices):
        RATES = "rates", "Custom rates"
        DISCOUNT = "discount", "Discount"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.CharField(max_length=64, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    input_mtok = models.DecimalField(**_RATE)
    output_mtok = models.DecimalField(**_RATE)
    cache_read_mtok = models.DecimalField(**_RATE)
    cache_write_mtok = models.DecimalField(**_RATE)
    per_request_usd = models.DecimalField(**_RATE)
    discount_percent = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    note = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "provider", "model"],
                name="pricing_override_env_provider_model_unique",
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        discount_percent__isnull=True,
                        input_mtok__isnull=False,
                        output_mtok__isnull=False,
                    )
                    & ~Q(model="")
                )
                | Q(
                    discount_percent__isnull=False,
                    input_mtok__isnull=True,
                    output_mtok__isnull=True,
                    cache_read_mtok__isnull=True,
                    cache_write_mtok__isnull=True,
                    per_request_usd__isnull=True,
                ),
                name="pricing_override_rates_xor_discount",
            ),
            models.CheckConstraint(
                condition=~Q(model="") | ~Q(provider=""), name="pricing_override_has_target"
            ),
            models.CheckConstraint(
                condition=Q(discount_percent__isnull=True)
                | Q(discount_percent__gte=0, discount_percent__lte=100),
                name="pricing_override_discount_range",
            ),
            models.CheckConstraint(
                condition=(Q(input_mtok__isnull=True) | Q(input_mtok__gte=0))
                & (Q(output_mtok__isnull=True) | Q(output_mtok__gte=0))
                & (Q(cache_read_mtok__isnull=True) | Q(cache_read_mtok__gte=0))
                & (Q(cache_write_mtok__isnull=True) | Q(cache_write_mtok__gte=0))
                & (Q(per_request_usd__isnull=True) | Q(per_request_usd__gte=0)),
                name="pricing_override_rates_non_negative",
            ),
        ]

    @property
    def kind(self) -> str:
        return self.Kind.DISCOUNT if self.discount_percent is not None else self.Kind.RATES

    def __str__(self) -> str:
        return f"{self.provider or '*'}/{self.model or '*'} ({self.kind})"
