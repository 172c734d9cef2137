"""A simulation request: the JSON body (docs/simulations.md) parsed into typed, normalised
inputs. Every problem is reported at once, keyed by its path in the body
(``scenarios.0.changes.1.amount``), as a 400 ``validation_failed``.

The normalised form (:meth:`SimulationInput.canonical`) is what the inputs hash covers:
the same request (decimal strings in any spelling, keys in any order) gives the same hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from decimal import Decimal
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core.api.schema import decimal_pattern
from apps.core.errors import ValidationFailed
from apps.core.money import decimal_str, parse_decimal
from apps.plans.api import parse_rule
from apps.plans.pricing import amount_problem
from apps.plans.services import RuleSpec, spec_errors

MAX_SCENARIOS = 5
MAX_CHANGES = 50
MAX_CUSTOMERS = 10_000
MAX_WINDOW = dt.timedelta(days=366)
DEFAULT_WINDOW = dt.timedelta(days=30)
DEFAULT_SHOCK_PCT = Decimal(20)
BANDS = ("loss", "thin", "healthy", "unknown")
COHORT_TYPES = ("all", "plan", "customers", "band")
HUNDRED = Decimal(100)
# The decimal strings each kind of amount takes (the schema states the same patterns).
MONEY_PATTERN = decimal_pattern(12, 12, minimum=0)
POSITIVE_PATTERN = decimal_pattern(12, 12, minimum=1)
PERCENT_PATTERN = decimal_pattern(3, 12, minimum=0, maximum=100)


class _Errors:
    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.fields.setdefault(field, []).append(message)

    def text(
        self, data: dict, name: str, path: str, *, required: bool = True, blank: bool = False
    ) -> str:
        field = f"{path}.{name}"
        if name not in data:
            if required:
                self.add(field, "Required.")
            return ""
        value = data[name]
        if value is None:
            self.add(field, "Required." if required else "May not be null.")
            return ""
        if not isinstance(value, str) or len(value) > 255:
            self.add(field, "Must be a string of at most 255 characters.")
            return ""
        if not value and not blank:
            self.add(field, "This field may not be blank.")
            return ""
        if "\x00" in value:
            self.add(field, "NUL characters are not allowed.")
            return ""
        return value

    def amount(
        self,
        data: dict,
        name: str,
        path: str,
        *,
        required: bool = True,
        positive: bool = False,
        percent: bool = False,
    ) -> Decimal | None:
        if name not in data:
            if required:
                self.add(f"{path}.{name}", "Required.")
            return None
        raw = data[name]
        try:
            pattern = (
                POSITIVE_PATTERN if positive else PERCENT_PATTERN if percent else MONEY_PATTERN
            )
            # Decimal strings only (no float ever gets here), in the schema's pattern.
            if not isinstance(raw, str) or not re.fullmatch(pattern, raw):
                raise ValueError(raw)
            value = parse_decimal(raw)
        except ValueError:
            self.add(f"{path}.{name}", "Must be a decimal string.")
            return None
        if problem := amount_problem(value, positive=positive):
            self.add(f"{path}.{name}", problem)
            return None
        return value

    def known(self, data: dict, allowed: set[str], path: str) -> None:
        for name in set(data) - allowed:
            self.add(f"{path}.{name}" if path else name, "Unknown field.")


@dataclasses.dataclass(frozen=True)
class Change:
    """One change of a scenario: ``type`` and its normalised fields (Decimals parsed; a
    pricing rule also carries its parsed :class:`RuleSpec`)."""

    type: str
    fields: dict[str, Any]
    rule: RuleSpec | None = None

    def get(self, name: str) -> Any:
        return self.fields.get(name)


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    changes: tuple[Change, ...]

    def of_type(self, kind: str) -> list[Change]:
        return [change for change in self.changes if change.type == kind]


@dataclasses.dataclass(frozen=True)
class Cohort:
    type: str = "all"
    plan_key: str = ""
    references: tuple[str, ...] = ()
    band: str = ""


@dataclasses.dataclass(frozen=True)
class SimulationInput:
    name: str
    start: dt.datetime
    end: dt.datetime
    cohort: Cohort
    scenarios: tuple[Scenario, ...]
    shock_pct: Decimal = DEFAULT_SHOCK_PCT

    def canonical(self) -> dict[str, Any]:
        """The inputs as plain JSON (decimal strings normalised, times in UTC ISO)."""
        return {
            "name": self.name,
            "window": {"from": _iso(self.start), "to": _iso(self.end)},
            "cohort": _cohort_json(self.cohort),
            "billShockThresholdPct": decimal_str(self.shock_pct),
            "scenarios": [
                {
                    "name": scenario.name,
                    "changes": [
                        {"type": change.type, **_plain(change.fields)}
                        for change in scenario.changes
                    ],
                }
                for scenario in self.scenarios
            ],
        }

    def inputs_hash(self, environment_id: Any) -> str:
        body = json.dumps(
            {"environment": str(environment_id), **self.canonical()},
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode()).hexdigest()


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_str(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _cohort_json(cohort: Cohort) -> dict[str, Any]:
    out: dict[str, Any] = {"type": cohort.type}
    if cohort.type == "plan":
        out["planKey"] = cohort.plan_key
    elif cohort.type == "customers":
        out["customerReferenceIds"] = list(cohort.references)
    elif cohort.type == "band":
        out["band"] = cohort.band
    return out


# -- the changes ---------------------------------------------------------------------------

_TEXT, _AMOUNT, _POSITIVE, _OPTIONAL_TEXT, _OPTIONAL_AMOUNT = "t", "a", "p", "ot", "oa"
# Each change type: its fields and how each is read.
CHANGE_FIELDS: dict[str, dict[str, str]] = {
    "plan_base_price": {"planKey": _TEXT, "amount": _AMOUNT},
    "pricing_rule": {"planKey": _TEXT, "featureKey": _TEXT},
    "credit_weight": {"featureKey": _TEXT, "model": _OPTIONAL_TEXT, "weight": _POSITIVE},
    "credit_price": {"creditModel": _TEXT, "unitPrice": _AMOUNT},
    "model_swap": {
        "featureKey": _TEXT,
        "fromModel": _OPTIONAL_TEXT,
        "toModel": _TEXT,
        "toProvider": _OPTIONAL_TEXT,
        "inputRatio": _OPTIONAL_AMOUNT,
        "outputRatio": _OPTIONAL_AMOUNT,
    },
    "provider_price": {
        "provider": _TEXT,
        "model": _TEXT,
        "inputCostPerMillion": _AMOUNT,
        "outputCostPerMillion": _AMOUNT,
        "cacheReadCostPerMillion": _OPTIONAL_AMOUNT,
        "cacheWriteCostPerMillion": _OPTIONAL_AMOUNT,
    },
    "discount": {"percent": _AMOUNT, "planKey": _OPTIONAL_TEXT},
    "move_plan": {"fromPlanKey": _TEXT, "toPlanKey": _TEXT},
}


def _change(raw: Any, path: str, errors: _Errors) -> Change | None:
    if not isinstance(raw, dict):
        errors.add(path, "Must be an object.")
        return None
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in CHANGE_FIELDS:
        errors.add(f"{path}.type", f"One of {', '.join(CHANGE_FIELDS)}.")
        return None
    spec = CHANGE_FIELDS[kind]
    errors.known(raw, {"type", *spec, *(["rule"] if kind == "pricing_rule" else [])}, path)
    fields: dict[str, Any] = {}
    for name, how in spec.items():
        if how in (_TEXT, _OPTIONAL_TEXT):
            fields[name] = errors.text(raw, name, path, required=how == _TEXT) or None
        else:
            fields[name] = errors.amount(
                raw,
                name,
                path,
                required=how != _OPTIONAL_AMOUNT,
                positive=how == _POSITIVE,
                percent=kind == "discount",
            )
    if kind == "discount" and fields["percent"] is not None and fields["percent"] > HUNDRED:
        errors.add(f"{path}.percent", "At most 100.")
    rule = None
    if kind == "pricing_rule":
        rule = _rule(raw.get("rule"), f"{path}.rule", errors)
        fields["rule"] = raw.get("rule")
    return Change(kind, fields, rule)


def _rule(raw: Any, path: str, errors: _Errors) -> RuleSpec | None:
    if not isinstance(raw, dict):
        errors.add(path, "Must be an object (the body the plans API takes for a rule).")
        return None
    if not isinstance(raw.get("model", ""), str | None):
        errors.add(f"{path}.model", "Must be a string.")
        return None
    try:
        spec = parse_rule(raw, prefix=f"{path}.")
    except ValidationFailed as exc:
        errors.fields.update(exc.fields or {})
        return None
    except (TypeError, AttributeError):  # a value of a type the plans parser does not expect
        errors.add(path, "Not a rule the plans API takes.")
        return None
    for name, messages in spec_errors(spec).items():
        for message in messages:
            errors.add(f"{path}.{name}", message)
    return spec


def _scenarios(raw: Any, errors: _Errors) -> tuple[Scenario, ...]:
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SCENARIOS:
        errors.add("scenarios", f"A list of 1 to {MAX_SCENARIOS} scenarios.")
        return ()
    out = []
    for index, item in enumerate(raw):
        path = f"scenarios.{index}"
        if not isinstance(item, dict):
            errors.add(path, "Must be an object.")
            continue
        errors.known(item, {"name", "changes"}, path)
        name = errors.text(item, "name", path, required=False, blank=True)
        name = name or f"Scenario {index + 1}"
        changes_raw = item.get("changes", [])
        if not isinstance(changes_raw, list) or len(changes_raw) > MAX_CHANGES:
            errors.add(f"{path}.changes", f"A list of at most {MAX_CHANGES} changes.")
            continue
        changes = [
            _change(change, f"{path}.changes.{position}", errors)
            for position, change in enumerate(changes_raw)
        ]
        out.append(Scenario(name, tuple(c for c in changes if c is not None)))
    return tuple(out)


def _cohort(raw: Any, errors: _Errors) -> Cohort:
    if not isinstance(raw, dict) or raw.get("type") not in COHORT_TYPES:
        errors.add("cohort.type", f"One of {', '.join(COHORT_TYPES)}.")
        return Cohort()
    kind = raw["type"]
    allowed = {"all": set(), "plan": {"planKey"}, "customers": {"customerReferenceIds"}}
    errors.known(raw, {"type", *allowed.get(kind, {"band"})}, "cohort")
    if kind == "plan":
        return Cohort(kind, plan_key=errors.text(raw, "planKey", "cohort"))
    if kind == "band":
        band = raw.get("band")
        if band not in BANDS:
            errors.add("cohort.band", f"One of {', '.join(BANDS)}.")
        return Cohort(kind, band=band if band in BANDS else "")
    if kind == "customers":
        refs = raw.get("customerReferenceIds")
        if (
            not isinstance(refs, list)
            or not 1 <= len(refs) <= MAX_CUSTOMERS
            or not all(isinstance(ref, str) and 0 < len(ref) <= 255 for ref in refs)
        ):
            errors.add(
                "cohort.customerReferenceIds", f"A list of 1 to {MAX_CUSTOMERS} reference ids."
            )
            return Cohort(kind)
        return Cohort(kind, references=tuple(sorted(set(refs))))
    return Cohort()


def _parse_instant(raw: str) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(raw.upper())  # RFC 3339 allows "t" and "z"
    except ValueError:
        try:
            return parse_datetime(raw)
        except ValueError:
            return None


def _instant(raw: Any, path: str, errors: _Errors) -> dt.datetime | None:
    parsed = _parse_instant(raw) if isinstance(raw, str) else None
    if parsed is None or parsed.tzinfo is None:
        errors.add(path, "An ISO 8601 instant with its time zone.")
        return None
    try:
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        errors.add(path, "Out of the supported range.")
        return None


def _window(raw: Any, now: dt.datetime, errors: _Errors) -> tuple[dt.datetime, dt.datetime]:
    end, start = now, now - DEFAULT_WINDOW
    if not isinstance(raw, dict):
        errors.add("window", "Must be an object with from and to.")
        return start, end
    errors.known(raw, {"from", "to"}, "window")
    given_end = _instant(raw["to"], "window.to", errors) if "to" in raw else now
    given_start = _instant(raw["from"], "window.from", errors) if "from" in raw else None
    if given_end is None or ("from" in raw and given_start is None):
        return start, end
    if given_start is None:
        if given_end < dt.datetime.min.replace(tzinfo=dt.UTC) + DEFAULT_WINDOW:
            errors.add("window.to", "Out of the supported range.")
            return start, end
        given_start = given_end - DEFAULT_WINDOW
    if not given_start < given_end:
        errors.add("window.to", "Must be after window.from.")
    elif given_end - given_start > MAX_WINDOW:
        errors.add("window", "At most 366 days.")
    return given_start, given_end


def parse_request(body: Any, *, now: dt.datetime | None = None) -> SimulationInput:
    """The typed inputs of a ``POST /api/simulations`` body, or a 400 with every problem."""
    now = now or timezone.now()
    errors = _Errors()
    if not isinstance(body, dict):
        raise ValidationFailed(fields={"_body": ["Expected a JSON object."]})
    errors.known(body, {"name", "window", "cohort", "scenarios", "billShockThresholdPct"}, "")
    name = errors.text(body, "name", "", required=False, blank=True)
    start, end = (
        _window(body["window"], now, errors) if "window" in body else (now - DEFAULT_WINDOW, now)
    )
    cohort = _cohort(body["cohort"], errors) if "cohort" in body else Cohort()
    scenarios = _scenarios(body.get("scenarios"), errors)
    shock = errors.amount(body, "billShockThresholdPct", "", required=False)
    if errors.fields:
        raise ValidationFailed(fields={k.lstrip("."): v for k, v in errors.fields.items()})
    return SimulationInput(
        name=name,
        start=start,
        end=end,
        cohort=cohort,
        scenarios=scenarios,
        shock_pct=DEFAULT_SHOCK_PCT if shock is None else shock,
    )
