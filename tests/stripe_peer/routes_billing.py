"""Stripe Billing for the localstripe test peer: prices, billing meters and meter events.

localstripe (1.15) knows plans, subscriptions and invoices, but not Stripe Billing as
it is today. Importing this module adds, on ``localstripe.server.app``:

* ``/v1/prices``: create, retrieve, list (filters ``active``, ``currency``,
  ``product``, ``type``, ``recurring[usage_type|interval|meter]``, ``lookup_keys``),
  update (only what Stripe lets change: ``active``, ``metadata``, ``nickname``,
  ``lookup_key``, ``tax_behavior``). ``per_unit`` prices with ``unit_amount`` or
  ``unit_amount_decimal`` (at most 12 decimal places), ``transform_quantity``
  (``divide_by``, ``round`` up/down: packages), ``tiered`` prices with
  ``tiers_mode`` ``graduated`` or ``volume`` and per-tier ``unit_amount[_decimal]``
  / ``flat_amount[_decimal]``; ``recurring`` with ``usage_type`` ``licensed`` or
  ``metered`` (a metered price must name its ``meter``, as since API 2025-03-31).
  As on Stripe, ``tiers`` appear only with ``expand[]=tiers``.
* ``/v1/billing/meters``: create, retrieve, list (``status``), update
  (``display_name``), ``/deactivate``, ``/reactivate``; an active meter's
  ``event_name`` is unique. ``GET /v1/billing/meters/{id}/event_summaries``
  (``customer``, ``start_time``, ``end_time``) sums what the meter received.
* ``/v1/billing/meter_events``: create. The payload must carry the meter's
  customer key and a numeric value (whole or decimal, as a string). ``identifier``
  dedupes as Stripe does: a second event with an identifier already received is
  rejected (400, code ``resource_already_exists``) and not counted (a request
  repeated with the same ``Idempotency-Key`` gets the first answer again: the
  peer's idempotency middleware, ``server.py``).
* ``GET /_config/meter_events`` (test only; ``event_name``, ``customer``
  filters): every meter event accepted, oldest first, and the rejected
  duplicates, so a test can assert exactly what Stripe received;
  ``DELETE /_config/meter_events`` forgets them (so does the peer's flush).
* Subscriptions with ``items[][price]`` (localstripe takes only ``plan`` and one
  item): each recurring price is mirrored by a localstripe plan of the same id;
  the first licensed item goes through localstripe's own subscription code (its
  first invoice, payment, webhooks) and the other items are added to it; items
  export their ``price``. ``payment_behavior=default_incomplete`` leaves the
  first invoice open, unpaid (Stripe's behaviour); ``collection_method`` and
  ``days_until_due`` are accepted and shown.
* Invoice lines of a metered price: the usage of the line's period (the sum of
  the meter's events for the customer) priced by the price (tiers, package,
  decimal unit amounts), rounded once to minor units.

``register(app, peer)`` (called by ``server.py``) adds the routes and patches.
Route order: aiohttp matches routes in the order they were added, and
localstripe adds its generic ``/v1/<object>s/{id}`` routes when
``localstripe.server`` is imported, so a route added later never wins over one of
them. None of the paths above collides with them (``/v1/prices`` and
``/v1/billing/...`` are not localstripe objects; ``/_config/`` is the peer's test
prefix, which localstripe's key check lets through), so they are simply added.
Subscriptions are not re-routed: localstripe's route calls
``Subscription._api_create`` at request time, and that class method is replaced
(it falls back to localstripe's own code for plan items); to replace the handler
of an existing route, use ``peer.replace_route``.

The classes here are also registered on ``localstripe.resources`` (so
``expand`` finds them by id prefix, and a store dump could pickle them).
"""

from __future__ import annotations

import time
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from aiohttp import web
from localstripe import resources as R
from localstripe.errors import UserError
from localstripe.server import (
    api_create,
    api_list_all,
    api_retrieve,
    api_update,
    get_post_data,
    json_response,
    unflatten_data,
)

STRIPE_METER_WINDOW = 35 * 24 * 3600  # meter event timestamps: at most 35 days old
FUTURE_SKEW = 5 * 60  # ... and at most 5 minutes ahead
IDENTIFIER_WINDOW = 24 * 3600  # Stripe enforces identifier uniqueness for at least 24 h


# -- errors in Stripe's shape --------------------------------------------------------------


def _error(message: str, *, param: str | None = None, code: str | None = None) -> UserError:
    contents: dict[str, Any] = {}
    if param is not None:
        contents["param"] = param
    if code is not None:
        contents["code"] = code
    return UserError(400, message, contents)


def _unknown(kwargs: dict[str, Any], prefix: str = "") -> None:
    if kwargs:
        name = prefix + sorted(kwargs)[0]
        raise _error(f"Received unknown parameter: {name}", param=name, code="parameter_unknown")


def _missing(name: str) -> UserError:
    return _error(f"Missing required param: {name}.", param=name, code="parameter_missing")


def _int(value: Any, name: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise _error(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _error(
            f"Invalid integer: {value}", param=name, code="parameter_invalid_integer"
        ) from None
    if isinstance(value, str) and value.strip() != str(number):
        raise _error(f"Invalid integer: {value}", param=name, code="parameter_invalid_integer")
    if minimum is not None and number < minimum:
        raise _error(f"{name} must be at least {minimum}.", param=name)
    return number


def _decimal(value: Any, name: str, *, places: int = 12) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise _error(
            f"Invalid decimal: {value}", param=name, code="parameter_invalid_decimal"
        ) from None
    if not number.is_finite() or number < 0:
        raise _error(f"Invalid decimal: {value}", param=name, code="parameter_invalid_decimal")
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise _error(
            f"{name} may have at most {places} decimal places.",
            param=name,
            code="parameter_invalid_decimal",
        )
    return number


def _bool(value: Any, name: str) -> bool:
    value = R.try_convert_to_bool(value)
    if not isinstance(value, bool):
        raise _error(f"Invalid boolean: {value}", param=name, code="parameter_invalid_boolean")
    return value


def _decimal_text(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _register(cls: type) -> type:
    """Make ``cls`` findable as ``localstripe.resources.<name>`` (pickling the store)."""
    cls.__module__ = R.__name__
    setattr(R, cls.__name__, cls)
    return cls


# -- prices --------------------------------------------------------------------------------


def _tier(raw: Any, index: int) -> dict[str, Any]:
    name = f"tiers[{index}]"
    if not isinstance(raw, dict):
        raise _error(f"Invalid object: {name}", param=name)
    raw = dict(raw)
    up_to = raw.pop("up_to", None)
    if up_to is None:
        raise _missing(f"{name}[up_to]")
    tier: dict[str, Any] = {
        "up_to": None if up_to == "inf" else _int(up_to, f"{name}[up_to]", minimum=1)
    }
    for kind in ("unit_amount", "flat_amount"):
        whole, decimal = raw.pop(kind, None), raw.pop(f"{kind}_decimal", None)
        if whole is not None and decimal is not None:
            raise _error(
                f"You may only specify one of these parameters: {kind}, {kind}_decimal.",
                param=f"{name}[{kind}]",
            )
        if whole is not None:
            amount = Decimal(_int(whole, f"{name}[{kind}]", minimum=0))
        elif decimal is not None:
            amount = _decimal(decimal, f"{name}[{kind}_decimal]")
            if kind == "flat_amount" and amount != amount.to_integral_value():
                # flat_amount_decimal "represents an integer in minor units"
                raise _error(
                    "flat_amount_decimal must be a whole number of minor units.",
                    param=f"{name}[flat_amount_decimal]",
                )
        else:
            amount = None
        tier[kind] = amount
    _unknown(raw, f"{name}[")
    if tier["unit_amount"] is None and tier["flat_amount"] is None:
        raise _error(
            "Each tier needs at least one of unit_amount or flat_amount.",
            param=f"{name}[unit_amount]",
        )
    return tier


def _export_tier(tier: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"up_to": tier["up_to"]}
    for kind in ("unit_amount", "flat_amount"):
        amount = tier[kind]
        whole = amount is not None and amount == amount.to_integral_value()
        out[kind] = int(amount) if whole else None
        out[f"{kind}_decimal"] = None if amount is None else _decimal_text(amount)
    return out


@_register
class Price(R.StripeObject):
    object = "price"
    _id_prefix = "price_"
    _UPDATABLE = ("active", "metadata", "nickname", "lookup_key", "tax_behavior")

    def __init__(  # noqa: PLR0917 - Stripe's parameters, as localstripe's classes take them
        self,
        currency: Any = None,
        product: Any = None,
        product_data: Any = None,
        unit_amount: Any = None,
        unit_amount_decimal: Any = None,
        billing_scheme: Any = None,
        tiers: Any = None,
        tiers_mode: Any = None,
        recurring: Any = None,
        transform_quantity: Any = None,
        nickname: Any = None,
        metadata: Any = None,
        lookup_key: Any = None,
        active: Any = True,
        tax_behavior: Any = None,
        **kwargs: Any,
    ) -> None:
        _unknown(kwargs)
        if not isinstance(currency, str) or len(currency) != 3:
            raise (
                _missing("currency")
                if currency is None
                else _error(f"Invalid currency: {currency}", param="currency")
            )
        active = _bool(active, "active")
        if (product is None) == (product_data is None):
            raise _error(
                "You must specify exactly one of product or product_data.", param="product"
            )
        if product is not None:
            _retrieve(R.Product, product, "product")
        elif not isinstance(product_data, dict) or not product_data.get("name"):
            raise _missing("product_data[name]")

        scheme = billing_scheme or "per_unit"
        if scheme not in ("per_unit", "tiered"):
            raise _error(f"Invalid billing_scheme: {scheme}", param="billing_scheme")
        amount: Decimal | None = None
        parsed_tiers: list[dict[str, Any]] | None = None
        if scheme == "per_unit":
            if tiers is not None or tiers_mode is not None:
                raise _error(
                    "tiers and tiers_mode need billing_scheme=tiered.", param="billing_scheme"
                )
            if unit_amount is not None and unit_amount_decimal is not None:
                raise _error(
                    "You may only specify one of these parameters: unit_amount, "
                    "unit_amount_decimal.",
                    param="unit_amount",
                )
            if unit_amount is not None:
                amount = Decimal(_int(unit_amount, "unit_amount", minimum=0))
            elif unit_amount_decimal is not None:
                amount = _decimal(unit_amount_decimal, "unit_amount_decimal")
            else:
                raise _missing("unit_amount")
        else:
            if unit_amount is not None or unit_amount_decimal is not None:
                raise _error(
                    "unit_amount is not allowed with billing_scheme=tiered.", param="unit_amount"
                )
            if transform_quantity is not None:
                raise _error(
                    "transform_quantity cannot be combined with tiers.",
                    param="transform_quantity",
                )
            if tiers_mode not in ("graduated", "volume"):
                raise (
                    _missing("tiers_mode")
                    if tiers_mode is None
                    else _error(f"Invalid tiers_mode: {tiers_mode}", param="tiers_mode")
                )
            if not isinstance(tiers, list) or not tiers:
                raise _missing("tiers")
            parsed_tiers = [_tier(raw, i) for i, raw in enumerate(tiers)]
            previous = 0
            for i, tier in enumerate(parsed_tiers):
                last = i == len(parsed_tiers) - 1
                if tier["up_to"] is None and not last:
                    raise _error("Only the last tier may have up_to=inf.", param="tiers")
                if last and tier["up_to"] is not None:
                    raise _error("The last tier must have up_to=inf.", param="tiers")
                if tier["up_to"] is not None:
                    if tier["up_to"] <= previous:
                        raise _error("Tiers must be in ascending up_to order.", param="tiers")
                    previous = tier["up_to"]

        transform = None
        if transform_quantity is not None:
            if not isinstance(transform_quantity, dict):
                raise _error("Invalid transform_quantity", param="transform_quantity")
            raw = dict(transform_quantity)
            divide_by = raw.pop("divide_by", None)
            rounding = raw.pop("round", None)
            _unknown(raw, "transform_quantity[")
            if divide_by is None:
                raise _missing("transform_quantity[divide_by]")
            if rounding not in ("up", "down"):
                raise (
                    _missing("transform_quantity[round]")
                    if rounding is None
                    else _error(
                        f"Invalid transform_quantity[round]: {rounding}",
                        param="transform_quantity[round]",
                    )
                )
            transform = {
                "divide_by": _int(divide_by, "transform_quantity[divide_by]", minimum=1),
                "round": rounding,
            }

        recur = None
        if recurring is not None:
            if not isinstance(recurring, dict):
                raise _error("Invalid recurring", param="recurring")
            raw = dict(recurring)
            interval = raw.pop("interval", None)
            interval_count = raw.pop("interval_count", 1)
            usage_type = raw.pop("usage_type", "licensed")
            meter = raw.pop("meter", None)
            trial_days = raw.pop("trial_period_days", None)
            _unknown(raw, "recurring[")
            if interval not in ("day", "week", "month", "year"):
                raise (
                    _missing("recurring[interval]")
                    if interval is None
                    else _error(
                        f"Invalid recurring[interval]: {interval}", param="recurring[interval]"
                    )
                )
            if usage_type not in ("licensed", "metered"):
                raise _error(
                    f"Invalid recurring[usage_type]: {usage_type}", param="recurring[usage_type]"
                )
            if usage_type == "metered" and meter is None:
                raise _error(
                    "Metered prices must be backed by a meter: set recurring[meter].",
                    param="recurring[meter]",
                )
            if usage_type == "licensed" and meter is not None:
                raise _error(
                    "recurring[meter] is only allowed for metered prices.",
                    param="recurring[meter]",
                )
            if meter is not None:
                _retrieve(Meter, meter, "recurring[meter]")
            recur = {
                "interval": interval,
                "interval_count": _int(interval_count, "recurring[interval_count]", minimum=1),
                "meter": meter,
                "trial_period_days": None
                if trial_days is None
                else _int(trial_days, "recurring[trial_period_days]", minimum=0),
                "usage_type": usage_type,
            }
        if metadata is not None and not isinstance(metadata, dict):
            raise _error("Invalid metadata", param="metadata")

        if product is None:
            product = R.Product(type="service", **product_data).id

        # All validation is done: store the price.
        super().__init__()
        self.active = active
        self.billing_scheme = scheme
        self.currency = currency.lower()
        self.custom_unit_amount = None
        self.lookup_key = lookup_key
        self.metadata = metadata or {}
        self.nickname = nickname
        self.product = product
        self.recurring = recur
        self.tax_behavior = tax_behavior or "unspecified"
        self.tiers_mode = tiers_mode if scheme == "tiered" else None
        self.transform_quantity = transform
        self.type = "recurring" if recur is not None else "one_time"
        self._amount = amount
        self._tiers = parsed_tiers
        if recur is not None:
            self._bridge_plan()
        R.schedule_webhook(R.Event("price.created", self))

    def _bridge_plan(self) -> None:
        """A localstripe plan with this price's id, so its subscription and invoice code
        can carry the price (amounts of metered and tiered prices are computed here)."""
        recur = self.recurring
        per_unit = self.billing_scheme == "per_unit" and recur["usage_type"] == "licensed"
        amount = int(self._amount.to_integral_value(ROUND_HALF_UP)) if per_unit else 0
        R.Plan(
            id=self.id,
            product=self.product,
            currency=self.currency,
            interval=recur["interval"],
            interval_count=recur["interval_count"],
            usage_type=recur["usage_type"],
            amount=amount,
            nickname=self.nickname,
        )

    @property
    def unit_amount(self) -> int | None:
        amount = self._amount
        if amount is None or amount != amount.to_integral_value():
            return None
        return int(amount)

    @property
    def unit_amount_decimal(self) -> str | None:
        return None if self._amount is None else _decimal_text(self._amount)

    def _export(self, expand: Any = None) -> dict[str, Any]:
        expand = list(expand or [])
        with_tiers = "tiers" in expand
        if with_tiers:
            expand.remove("tiers")
        out = super()._export(expand=expand)
        if with_tiers and self._tiers is not None:
            out["tiers"] = [_export_tier(t) for t in self._tiers]
        return out

    def _update(self, **data: Any) -> None:
        unknown = {k: v for k, v in data.items() if k not in self._UPDATABLE}
        _unknown(unknown)
        if "active" in data:
            data["active"] = _bool(data["active"], "active")
        super()._update(**data)

    @classmethod
    def _api_update(cls, id: str, **data: Any) -> Price:
        obj = super()._api_update(id, **data)
        R.schedule_webhook(R.Event("price.updated", obj))
        return obj

    @classmethod
    def _api_delete(cls, id: str) -> Any:
        raise UserError(405, "Prices cannot be deleted; set active=false.")

    @classmethod
    def _api_list_all(  # noqa: PLR0917 - Stripe's list filters
        cls,
        url: str,
        active: Any = None,
        currency: Any = None,
        product: Any = None,
        type: Any = None,  # Stripe's parameter name
        recurring: Any = None,
        lookup_keys: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **kwargs: Any,
    ) -> Any:
        _unknown(kwargs)
        li = super()._api_list_all(url, limit=limit, starting_after=starting_after)
        prices = li._list
        if active is not None:
            wanted = _bool(active, "active")
            prices = [p for p in prices if p.active == wanted]
        if currency is not None:
            prices = [p for p in prices if p.currency == str(currency).lower()]
        if product is not None:
            prices = [p for p in prices if p.product == product]
        if type is not None:
            prices = [p for p in prices if p.type == type]
        if recurring is not None:
            if not isinstance(recurring, dict):
                raise _error("Invalid recurring", param="recurring")
            for key, value in recurring.items():
                if key not in ("interval", "meter", "usage_type"):
                    _unknown({key: value}, "recurring[")
                prices = [p for p in prices if p.recurring and p.recurring.get(key) == value]
        if lookup_keys is not None:
            keys = lookup_keys if isinstance(lookup_keys, list) else [lookup_keys]
            prices = [p for p in prices if p.lookup_key in keys]
        li._list = prices
        return li

    # -- what a quantity costs (minor units, unrounded) --

    def _charge(self, quantity: Decimal) -> Decimal:
        if quantity <= 0:
            return Decimal(0)
        if self.billing_scheme == "per_unit":
            units = quantity
            if self.transform_quantity is not None:
                divided = quantity / self.transform_quantity["divide_by"]
                up = self.transform_quantity["round"] == "up"
                units = divided.to_integral_value(ROUND_CEILING if up else ROUND_FLOOR)
            return units * self._amount
        tiers = self._tiers or []
        if self.tiers_mode == "volume":
            for tier in tiers:
                if tier["up_to"] is None or quantity <= tier["up_to"]:
                    return quantity * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
        total, lower = Decimal(0), Decimal(0)
        for tier in tiers:  # graduated
            if quantity <= lower:
                break
            upper = quantity if tier["up_to"] is None else min(quantity, Decimal(tier["up_to"]))
            total += (upper - lower) * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
            if tier["up_to"] is None:
                break
            lower = Decimal(tier["up_to"])
        return total


def _retrieve(cls: Any, id: Any, param: str) -> Any:
    if not isinstance(id, str) or (cls.object + ":" + id) not in R.store:
        raise _error(
            f"No such {cls.object.split('.')[-1]}: '{id}'", param=param, code="resource_missing"
        )
    return R.store[cls.object + ":" + id]


# -- meters --------------------------------------------------------------------------------


@_register
class Meter(R.StripeObject):
    object = "billing.meter"
    _id_prefix = "mtr_"

    def __init__(  # noqa: PLR0917 - Stripe's parameters, as localstripe's classes take them
        self,
        display_name: Any = None,
        event_name: Any = None,
        default_aggregation: Any = None,
        customer_mapping: Any = None,
        value_settings: Any = None,
        event_time_window: Any = None,
        **kwargs: Any,
    ) -> None:
        _unknown(kwargs)
        if not isinstance(display_name, str) or not display_name:
            raise _missing("display_name")
        if not isinstance(event_name, str) or not event_name:
            raise _missing("event_name")
        if len(event_name) > 100:
            raise _error("event_name may be at most 100 characters.", param="event_name")
        if not isinstance(default_aggregation, dict) or "formula" not in default_aggregation:
            raise _missing("default_aggregation[formula]")
        formula = default_aggregation["formula"]
        if formula not in ("sum", "count", "last"):
            raise _error(
                f"Invalid default_aggregation[formula]: {formula}",
                param="default_aggregation[formula]",
            )
        _unknown(
            {k: v for k, v in default_aggregation.items() if k != "formula"}, "default_aggregation["
        )
        mapping = {"event_payload_key": "stripe_customer_id", "type": "by_id"}
        if customer_mapping is not None:
            if not isinstance(customer_mapping, dict):
                raise _error("Invalid customer_mapping", param="customer_mapping")
            raw = dict(customer_mapping)
            key, kind = raw.pop("event_payload_key", None), raw.pop("type", None)
            _unknown(raw, "customer_mapping[")
            if not key:
                raise _missing("customer_mapping[event_payload_key]")
            if kind != "by_id":
                raise (
                    _missing("customer_mapping[type]")
                    if kind is None
                    else _error(
                        f"Invalid customer_mapping[type]: {kind}", param="customer_mapping[type]"
                    )
                )
            mapping = {"event_payload_key": key, "type": "by_id"}
        values = {"event_payload_key": "value"}
        if value_settings is not None:
            if not isinstance(value_settings, dict) or not value_settings.get("event_payload_key"):
                raise _missing("value_settings[event_payload_key]")
            _unknown(
                {k: v for k, v in value_settings.items() if k != "event_payload_key"},
                "value_settings[",
            )
            values = {"event_payload_key": value_settings["event_payload_key"]}
        if event_time_window not in (None, "day", "hour"):
            raise _error(
                f"Invalid event_time_window: {event_time_window}", param="event_time_window"
            )
        if _active_meter(event_name) is not None:
            raise _error(
                f"An active meter with event_name '{event_name}' already exists.",
                param="event_name",
                code="resource_already_exists",
            )

        super().__init__()
        now = int(time.time())
        self.customer_mapping = mapping
        self.default_aggregation = {"formula": formula}
        self.display_name = display_name
        self.event_name = event_name
        self.event_time_window = event_time_window
        self.status = "active"
        self.status_transitions = {"deactivated_at": None}
        self.updated = now
        self.value_settings = values

    def _update(self, **data: Any) -> None:
        _unknown({k: v for k, v in data.items() if k != "display_name"})
        if "display_name" in data:
            if not isinstance(data["display_name"], str) or not data["display_name"]:
                raise _missing("display_name")
            self.display_name = data["display_name"]
            self.updated = int(time.time())

    @classmethod
    def _api_delete(cls, id: str) -> Any:
        raise UserError(405, "Meters cannot be deleted; deactivate them.")

    @classmethod
    def _api_list_all(
        cls,
        url: str,
        status: Any = None,
        limit: Any = None,
        starting_after: Any = None,
        **kwargs: Any,
    ) -> Any:
        _unknown(kwargs)
        li = super()._api_list_all(url, limit=limit, starting_after=starting_after)
        if status is not None:
            if status not in ("active", "inactive"):
                raise _error(f"Invalid status: {status}", param="status")
            li._list = [m for m in li._list if m.status == status]
        return li

    @classmethod
    def _api_deactivate(cls, id: str, **kwargs: Any) -> Meter:
        _unknown(kwargs)
        meter = cls._api_retrieve(id)
        meter.status = "inactive"
        meter.updated = int(time.time())
        meter.status_transitions = {"deactivated_at": meter.updated}
        return meter

    @classmethod
    def _api_reactivate(cls, id: str, **kwargs: Any) -> Meter:
        _unknown(kwargs)
        meter = cls._api_retrieve(id)
        other = _active_meter(meter.event_name)
        if other is not None and other is not meter:
            raise _error(
                f"An active meter with event_name '{meter.event_name}' already exists.",
                code="resource_already_exists",
            )
        meter.status = "active"
        meter.updated = int(time.time())
        meter.status_transitions = {"deactivated_at": None}
        return meter


def _active_meter(event_name: str) -> Meter | None:
    for key, value in R.store.items():
        if (
            key.startswith("billing.meter:")
            and value.event_name == event_name
            and value.status == "active"
        ):
            return value
    return None


# -- meter events --------------------------------------------------------------------------

# Every accepted meter event, in arrival order, and those refused as duplicates (test view).
received: list[dict[str, Any]] = []
duplicates: list[dict[str, Any]] = []
_identifiers: dict[str, int] = {}  # identifier -> when it was received


def _meter_event(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    event_name = data.pop("event_name", None)
    payload = data.pop("payload", None)
    identifier = data.pop("identifier", None)
    timestamp = data.pop("timestamp", None)
    _unknown(data)
    if not isinstance(event_name, str) or not event_name:
        raise _missing("event_name")
    if len(event_name) > 100:
        raise _error("event_name may be at most 100 characters.", param="event_name")
    if not isinstance(payload, dict) or not payload:
        raise _missing("payload")
    if any(not isinstance(v, str) for v in payload.values()):
        raise _error("payload values must be strings.", param="payload")
    now = int(time.time())
    if timestamp is None:
        at = now
    else:
        at = _int(timestamp, "timestamp")
        if at < now - STRIPE_METER_WINDOW:
            raise _error(
                "The timestamp must be within the past 35 calendar days.",
                param="timestamp",
                code="timestamp_too_far_in_past",
            )
        if at > now + FUTURE_SKEW:
            raise _error(
                "The timestamp may be at most 5 minutes in the future.",
                param="timestamp",
                code="timestamp_in_future",
            )
    if identifier is not None:
        if not isinstance(identifier, str) or not identifier or len(identifier) > 100:
            raise _error("identifier must be 1 to 100 characters.", param="identifier")
    else:
        identifier = "mevt_" + R.random_id(24)
    meter = _active_meter(event_name)
    # Stripe validates the payload against the meter (missing meter, customer key or value
    # are reported asynchronously there); here they are refused at once, which is stricter.
    if meter is None:
        raise _error(
            f"No active meter for event_name '{event_name}'.",
            param="event_name",
            code="meter_event_no_meter",
        )
    customer_key = meter.customer_mapping["event_payload_key"]
    value_key = meter.value_settings["event_payload_key"]
    customer = payload.get(customer_key)
    if not customer:
        raise _error(
            f"The payload has no '{customer_key}'.",
            param=f"payload[{customer_key}]",
            code="meter_event_no_customer_defined",
        )
    if ("customer:" + customer) not in R.store:
        raise _error(
            f"No such customer: '{customer}'",
            param=f"payload[{customer_key}]",
            code="meter_event_customer_not_found",
        )
    raw_value = payload.get(value_key)
    if raw_value is None:
        raise _error(
            f"The payload has no '{value_key}'.",
            param=f"payload[{value_key}]",
            code="meter_event_value_not_found",
        )
    try:
        value = Decimal(raw_value)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise _error(
            f"Invalid value: {raw_value}",
            param=f"payload[{value_key}]",
            code="meter_event_invalid_value",
        )
    seen = _identifiers.get(identifier)
    if seen is not None and now - seen < IDENTIFIER_WINDOW:
        duplicates.append(
            {
                "identifier": identifier,
                "event_name": event_name,
                "payload": payload,
                "timestamp": at,
                "created": now,
            }
        )
        raise _error(
            f"A meter event with identifier '{identifier}' already exists.",
            param="identifier",
            code="resource_already_exists",
        )
    _identifiers[identifier] = now
    event = {
        "object": "billing.meter_event",
        "created": now,
        "event_name": event_name,
        "identifier": identifier,
        "livemode": False,
        "payload": payload,
        "timestamp": at,
    }
    received.append({**event, "meter": meter.id, "customer": customer, "value": str(value)})
    return event


async def meter_event_create(request: web.Request) -> web.Response:
    data = await get_post_data(request) or {}
    data.pop("expand", None)
    return json_response(_meter_event(data))


def usage(meter: Meter, customer: str, start: int, end: int) -> Decimal:
    """The meter's aggregated value for a customer over ``[start, end)``."""
    values = [
        Decimal(e["value"])
        for e in received
        if e["meter"] == meter.id and e["customer"] == customer and start <= e["timestamp"] < end
    ]
    formula = meter.default_aggregation["formula"]
    if formula == "count":
        return Decimal(len(values))
    if formula == "last":
        return values[-1] if values else Decimal(0)
    return sum(values, Decimal(0))


async def event_summaries(request: web.Request) -> web.Response:
    meter = Meter._api_retrieve(request.match_info["id"])
    query = unflatten_data(request.query)
    customer = query.get("customer")
    if not customer:
        raise _missing("customer")
    if query.get("start_time") is None:
        raise _missing("start_time")
    if query.get("end_time") is None:
        raise _missing("end_time")
    start = _int(query.get("start_time"), "start_time")
    end = _int(query.get("end_time"), "end_time")
    total = usage(meter, customer, start, end)
    summary = {
        "id": f"mtrusg_{meter.id}_{customer}_{start}",
        "object": "billing.meter_event_summary",
        "aggregated_value": float(total),
        "end_time": end,
        "livemode": False,
        "meter": meter.id,
        "start_time": start,
    }
    return json_response(
        {
            "object": "list",
            "data": [summary],
            "has_more": False,
            "url": f"/v1/billing/meters/{meter.id}/event_summaries",
        }
    )


async def config_meter_events(request: web.Request) -> web.Response:
    query = unflatten_data(request.query)
    rows = received
    if query.get("event_name"):
        rows = [e for e in rows if e["event_name"] == query["event_name"]]
    if query.get("customer"):
        rows = [e for e in rows if e["customer"] == query["customer"]]
    return json_response({"data": rows, "duplicates": duplicates, "count": len(rows)})


def forget_meter_events() -> None:
    received.clear()
    duplicates.clear()
    _identifiers.clear()


async def config_meter_events_clear(request: web.Request) -> web.Response:
    forget_meter_events()
    return web.Response()


# -- subscriptions with prices -------------------------------------------------------------

_SUBSCRIPTION_EXTRAS = ("collection_method", "days_until_due", "payment_settings", "off_session")


def _subscription_create(cls: Any, **data: Any) -> Any:
    items = data.get("items")
    if not (isinstance(items, list) and any(isinstance(i, dict) and "price" in i for i in items)):
        return cls(**data)  # localstripe's own plan items
    extras = {k: data.pop(k) for k in _SUBSCRIPTION_EXTRAS if k in data}
    collection = extras.get("collection_method", "charge_automatically")
    if collection not in ("charge_automatically", "send_invoice"):
        raise _error(f"Invalid collection_method: {collection}", param="collection_method")
    behavior = data.pop("payment_behavior", "allow_incomplete")
    if behavior not in ("allow_incomplete", "default_incomplete", "error_if_incomplete"):
        raise _error(f"Invalid payment_behavior: {behavior}", param="payment_behavior")
    prices: list[tuple[Price, dict[str, Any]]] = []
    seen: set[str] = set()
    for index, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise _error(f"Invalid items[{index}]", param=f"items[{index}]")
        item = dict(raw)
        price = _retrieve(Price, item.pop("price", None), f"items[{index}][price]")
        if price.type != "recurring":
            raise _error(
                "Subscriptions take recurring prices only.", param=f"items[{index}][price]"
            )
        if price.id in seen:
            raise _error(
                "A price may appear only once in a subscription.", param=f"items[{index}][price]"
            )
        seen.add(price.id)
        if price.recurring["usage_type"] == "metered" and item.get("quantity") is not None:
            raise _error(
                "Quantity should not be specified where usage_type is `metered`.",
                param=f"items[{index}][quantity]",
            )
        _unknown(
            {k: v for k, v in item.items() if k not in ("quantity", "metadata", "tax_rates")},
            f"items[{index}][",
        )
        prices.append((price, item))
    intervals = {(p.recurring["interval"], p.recurring["interval_count"]) for p, _ in prices}
    if len(intervals) > 1:
        raise _error(
            "All prices of a subscription must have the same billing interval.", param="items"
        )
    licensed = [pair for pair in prices if pair[0].recurring["usage_type"] == "licensed"]
    first = licensed[0] if licensed else prices[0]
    rest = [pair for pair in prices if pair is not first]
    price, item = first
    data["items"] = [{"plan": price.id, **item}]
    if behavior == "error_if_incomplete":
        data["payment_behavior"] = "error_if_incomplete"
    pay = R.Invoice.__dict__["_api_pay_invoice"]
    unpaid = behavior == "default_incomplete" or collection == "send_invoice"
    if unpaid:
        # Stripe does not try to charge: the first invoice stays open. (The handler runs
        # synchronously in the event loop: nothing else sees the swap.)
        R.Invoice._api_pay_invoice = classmethod(lambda c, id: R.Invoice._api_retrieve(id))
    try:
        subscription = cls(**data)
    finally:
        R.Invoice._api_pay_invoice = pay
    if collection == "send_invoice" and subscription.status == "incomplete":
        subscription.status = "active"  # Stripe: active while its invoice awaits payment
    for price, item in rest:
        subscription.items._list.append(
            R.SubscriptionItem(
                subscription=subscription.id,
                plan=price.id,
                quantity=item.get("quantity") or 1,
                metadata=item.get("metadata"),
                tax_rates=item.get("tax_rates") or [],
            )
        )
    subscription.collection_method = collection
    subscription.days_until_due = extras.get("days_until_due")
    # The customer.subscription.created event was built with the first item only: the
    # webhook has not been sent yet (it runs after this handler), so give it every item.
    for key, value in list(R.store.items()):
        if (
            key.startswith("event:")
            and value.type == "customer.subscription.created"
            and value.data["object"].get("id") == subscription.id
        ):
            value.data = {"object": subscription._export()}
    return subscription


def _item_price(self: Any) -> Any:
    return R.store.get("price:" + self.plan.id)


# -- invoice lines of metered prices -------------------------------------------------------

_line_init = R.InvoiceLineItem.__init__


def _invoice_line_init(self: Any, item: Any) -> None:
    """localstripe's line, then the usage amount of a metered price (tiers too)."""
    _line_init(self, item)
    if self.type != "subscription":
        return
    price = R.store.get("price:" + item.plan.id)
    if price is None or price.recurring["usage_type"] != "metered":
        if price is not None and price.billing_scheme == "tiered":
            self.amount = int(
                price._charge(Decimal(self.quantity)).to_integral_value(ROUND_HALF_UP)
            )
        return
    meter = R.store.get("billing.meter:" + price.recurring["meter"])
    subscription = R.store.get("subscription:" + (item._subscription or ""))
    if meter is None or subscription is None:
        return
    quantity = usage(meter, subscription.customer, self.period["start"], self.period["end"])
    self.quantity = int(quantity) if quantity == quantity.to_integral_value() else str(quantity)
    self.amount = int(price._charge(quantity).to_integral_value(ROUND_HALF_UP))
    self.price = price.id


# -- routes --------------------------------------------------------------------------------


def _extra(func: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        data = await get_post_data(request) or {}
        data.update(unflatten_data(request.query) or {})
        expand = data.pop("expand", None)
        return json_response(func(request.match_info["id"], **data)._export(expand=expand))

    return handler


def register(app: web.Application, peer: Any) -> None:
    R.Subscription._api_create = classmethod(_subscription_create)
    R.SubscriptionItem.price = property(_item_price)
    R.InvoiceLineItem.__init__ = _invoice_line_init
    for cls, url in ((Price, "/v1/prices"), (Meter, "/v1/billing/meters")):
        app.router.add_route("POST", url, api_create(cls, url))
        app.router.add_route("GET", url, api_list_all(cls, url))
        app.router.add_route("GET", url + "/{id}", api_retrieve(cls, url))
        app.router.add_route("POST", url + "/{id}", api_update(cls, url))
    meters = "/v1/billing/meters/{id}"
    app.router.add_route("POST", meters + "/deactivate", _extra(Meter._api_deactivate))
    app.router.add_route("POST", meters + "/reactivate", _extra(Meter._api_reactivate))
    app.router.add_route("GET", meters + "/event_summaries", event_summaries)
    app.router.add_route("POST", "/v1/billing/meter_events", meter_event_create)
    app.router.add_route("GET", "/_config/meter_events", config_meter_events)
    app.router.add_route("DELETE", "/_config/meter_events", config_meter_events_clear)

    flush = peer.flush

    def flush_all() -> None:
        flush()
        forget_meter_events()

    peer.flush = flush_all
