from __future__ import annotations

from django import forms

from apps.accounts.models import Organization, Role
from apps.apikeys import scopes as S
from apps.apikeys.models import ApiKey


class InviteForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(
        choices=[(r.value, r.label) for r in Role if r != Role.OWNER], initial=Role.MEMBER
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class ApiKeyForm(forms.Form):
    kind = forms.ChoiceField(choices=ApiKey.Kind.choices, initial=ApiKey.Kind.OBSERVE)
    name = forms.CharField(max_length=100, required=False)
    scopes = forms.MultipleChoiceField(
        choices=[(s, f"{s}: {S.SCOPE_DESCRIPTIONS[s]}") for s in S.ALL_SCOPES + S.CUSTOMER_SCOPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    customer_reference_id = forms.CharField(
        max_length=255, required=False, label="Customer reference (customer keys)"
    )
    budget_dollars = forms.DecimalField(
        min_value=0, decimal_places=2, required=False, label="Budget (USD)"
    )
    budget_period = forms.ChoiceField(
        choices=[("", "Lifetime"), *ApiKey.BudgetPeriod.choices], required=False
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, label="Expires after (days)"
    )


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=150)
    mode = forms.ChoiceField(choices=Organization.Mode.choices, widget=forms.RadioSelect)


# --- Observe ------------------------------------------------------------------------------


def _text(label: str) -> forms.CharField:
    return forms.CharField(max_length=255, required=False, label=label, strip=True)


class EventFilterForm(forms.Form):
    """Filters of the events page. Customer and feature are searches (part of a reference,
    email, name or key, any case), the provider is any case, the rest exact matches as
    ``GET /api/events`` takes them."""

    SINCE = (("", "Any time"), ("1h", "Last hour"), ("24h", "Last 24 hours"), ("7d", "Last 7 days"))

    customer = _text("Customer (reference, email or name)")
    feature = _text("Feature (key or name)")
    model = _text("Model")
    provider = _text("Provider")
    trace = _text("Trace id")
    event_name = _text("Event name")
    since = forms.ChoiceField(choices=SINCE, required=False, label="Time")
    start = forms.DateTimeField(required=False, label="From (UTC)")
    end = forms.DateTimeField(required=False, label="To (UTC)")

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end and start >= end:
            self.add_error("end", "Must be later than 'From'.")
        for name, value in data.items():
            if isinstance(value, str) and "\x00" in value:
                self.add_error(name, "No NUL characters.")
        return data


# --- Model price overrides -------------------------------------------------------------------


def _rate(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        required=False, min_value=0, max_digits=20, decimal_places=10, label=label
    )


class OverrideForm(forms.Form):
    """Negotiated rates for one model (USD per million tokens) or a discount percent."""

    KIND = (("rates", "Custom rates for one model"), ("discount", "Discount off the catalog"))

    kind = forms.ChoiceField(choices=KIND, initial="rates", widget=forms.RadioSelect)
    provider = forms.CharField(max_length=64, required=False, label="Provider (e.g. openai)")
    model = forms.CharField(max_length=200, required=False, label="Model (e.g. gpt-4o)")
    input_mtok = _rate("Input, USD / 1M tokens")
    output_mtok = _rate("Output, USD / 1M tokens")
    cache_read_mtok = _rate("Cache read, USD / 1M tokens")
    cache_write_mtok = _rate("Cache write, USD / 1M tokens")
    per_request_usd = _rate("Per request, USD")
    discount_percent = forms.DecimalField(
        required=False,
        min_value=0,
        max_value=100,
        max_digits=7,
        decimal_places=4,
        label="Discount, %",
    )
    note = forms.CharField(max_length=500, required=False)

    RATE_FIELDS = (
        "input_mtok",
        "output_mtok",
        "cache_read_mtok",
        "cache_write_mtok",
        "per_request_usd",
    )

    def service_values(self) -> dict[str, object]:
        """Keyword arguments of ``override_create`` (the other kind's fields dropped)."""
        data = self.cleaned_data
        values: dict[str, object] = {
            "provider": data["provider"],
            "model": data["model"],
            "note": data["note"],
        }
        if data["kind"] == "discount":
            values["discount_percent"] = data["discount_percent"]
            values.update(dict.fromkeys(self.RATE_FIELDS))
        else:
            values.update({name: data[name] for name in self.RATE_FIELDS})
            values["discount_percent"] = None
        return values
