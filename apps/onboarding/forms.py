from __future__ import annotations

from django import forms

from apps.accounts.models import Organization


class OnboardingForm(forms.Form):
    name = forms.CharField(max_length=150, label="Organization name")
    mode = forms.ChoiceField(
        choices=Organization.Mode.choices,
        widget=forms.RadioSelect,
        initial=Organization.Mode.OBSERVE,
        help_text="Observe: margins per customer, feature and model. "
        "Platform: adds plans, limits, credits and billing. You can switch later.",
    )
