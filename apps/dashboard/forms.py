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
        choices=[(s, s) for s in S.ALL_SCOPES + S.CUSTOMER_SCOPES],
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
