"""Client API for customers: ``/api/v1/client/customers``.

Customers are addressed by the integrator's ``customerReferenceId`` in the
path (a ``<str:>`` converter, so a reference containing ``/`` cannot be put in
the path; find it with ``GET /customers?customerReferenceId=...`` instead).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.audit import Actor
from apps.apikeys import scopes as S
from apps.apikeys.authentication import environment_of
from apps.apikeys.idempotency import APIView
from apps.apikeys.permissions import ensure_customer_access
from apps.core.api.fields import MetadataField, StrictCharField, optional_text
from apps.core.api.pagination import paginate_newest_first
from apps.core.api.schema import PAGE_PARAMETERS, page
from apps.core.errors import InvalidQuery, ValidationFailed

from .models import Customer
from .selectors import customer_get, customers_search
from .services import REFERENCE_MAX_LENGTH, customer_create, customer_update

# -- rendering --------------------------------------------------------------------------


def render_customer(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.pk,
        "customerReferenceId": customer.reference_id,
        "email": customer.email,
        "firstName": customer.first_name,
        "lastName": customer.last_name,
        "phoneNumber": customer.phone,
        "metadata": customer.metadata,
        "stripeCustomerId": customer.stripe_customer_id,
        "source": customer.source,
        "createdAt": customer.created_at,
        "modifiedAt": customer.updated_at,
    }


_CUSTOMER = inline_serializer(
    "CustomersCustomer",
    fields={
        "id": serializers.UUIDField(),
        "customerReferenceId": serializers.CharField(),
        "email": serializers.CharField(help_text='"" when not given'),
        "firstName": serializers.CharField(),
        "lastName": serializers.CharField(),
        "phoneNumber": serializers.CharField(),
        "metadata": serializers.JSONField(help_text="a JSON object"),
        "stripeCustomerId": serializers.CharField(),
        "source": serializers.ChoiceField(choices=Customer.Source.values),
        "createdAt": serializers.DateTimeField(),
        "modifiedAt": serializers.DateTimeField(),
    },
)
_CUSTOMER_LIST = page("CustomersCustomerList", _CUSTOMER)


# -- input ------------------------------------------------------------------------------

# API name -> service keyword.
_FIELD_MAP = {
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "metadata": "metadata",
    "stripeCustomerId": "stripe_customer_id",
}


class CustomerFieldsInput(serializers.Serializer):
    email = optional_text(254, email=True)
    firstName = optional_text(150)
    lastName = optional_text(150)
    phoneNumber = optional_text(40)
    phone = optional_text(40)  # an alias of phoneNumber
    metadata = MetadataField(required=False)
    stripeCustomerId = optional_text(255)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "phone" in attrs and "phoneNumber" in attrs and attrs["phone"] != attrs["phoneNumber"]:
            raise serializers.ValidationError({"phone": ["Give phoneNumber or phone, not both."]})
        return attrs

    def service_fields(self) -> dict[str, Any]:
        """The given fields as service keywords; ``null`` strings become ``""``."""
        data = self.validated_data
        out = {_FIELD_MAP[name]: data[name] for name in _FIELD_MAP if name in data}
        for name in ("phoneNumber", "phone"):
            if name in data:
                out["phone"] = data[name]
        return {
            key: ("" if value is None and key != "metadata" else value)
            for key, value in out.items()
        }


class CustomerCreateInput(CustomerFieldsInput):
    customerReferenceId = StrictCharField(max_length=REFERENCE_MAX_LENGTH, trim_whitespace=False)


class CustomerUpdateInput(CustomerFieldsInput):
    # Accepted only when it names the customer already in the path: a reference never changes.
    customerReferenceId = StrictCharField(
        max_length=REFERENCE_MAX_LENGTH, trim_whitespace=False, required=False
    )


# -- views ------------------------------------------------------------------------------


class CustomerListCreate(APIView):
    required_scopes = {
        "GET": S.CUSTOMERS_READ,
        "HEAD": S.CUSTOMERS_READ,
        "POST": S.CUSTOMERS_WRITE,
    }

    @extend_schema(
        summary="List customers, newest first",
        operation_id="v1_client_customers_list",
        request=None,
        parameters=[
            OpenApiParameter("search", str, description="Words matched in reference, email, names"),
            OpenApiParameter("customerReferenceId", str, description="Exact reference"),
            OpenApiParameter("source", str, enum=Customer.Source.values),
            *PAGE_PARAMETERS,
        ],
        responses={200: _CUSTOMER_LIST},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        customers = customers_search(environment_of(request), params.get("search", ""))
        reference = params.get("customerReferenceId")
        if reference is not None:
            if len(reference) > REFERENCE_MAX_LENGTH or "\x00" in reference:
                raise InvalidQuery(fields={"customerReferenceId": ["Not a valid reference."]})
            customers = customers.filter(reference_id=reference)
        source = params.get("source")
        if source:
            if source not in Customer.Source.values:
                raise InvalidQuery(
                    fields={"source": [f"One of {', '.join(Customer.Source.values)}."]}
                )
            customers = customers.filter(source=source)
        return Response(paginate_newest_first(customers, request, render_customer))

    @extend_schema(
        summary="Create (register) a customer",
        request=CustomerCreateInput,
        responses={201: _CUSTOMER},
    )
    def post(self, request: Request) -> Response:
        body = CustomerCreateInput(data=request.data)
        body.is_valid(raise_exception=True)
        customer = customer_create(
            environment=environment_of(request),
            reference_id=body.validated_data["customerReferenceId"],
            actor=Actor.from_request(request),
            **body.service_fields(),
        )
        return Response(render_customer(customer), status=status.HTTP_201_CREATED)


class CustomerDetail(APIView):
    required_scopes = {
        "GET": S.CUSTOMERS_READ,
        "HEAD": S.CUSTOMERS_READ,
        "PATCH": S.CUSTOMERS_WRITE,
    }

    # A ck_ key may read its own customer, and change nothing.
    customer_key_scope = {"GET": S.CUSTOMER_READ, "HEAD": S.CUSTOMER_READ}

    @extend_schema(
        summary="Get one customer by its reference", request=None, responses={200: _CUSTOMER}
    )
    def get(self, request: Request, reference_id: str) -> Response:
        ensure_customer_access(request, reference_id)
        return Response(render_customer(customer_get(environment_of(request), reference_id)))

    @extend_schema(
        summary="Change a customer's details",
        request=CustomerUpdateInput,
        responses={200: _CUSTOMER},
    )
    def patch(self, request: Request, reference_id: str) -> Response:
        customer = customer_get(environment_of(request), reference_id)
        body = CustomerUpdateInput(data=request.data)
        body.is_valid(raise_exception=True)
        given = body.validated_data.get("customerReferenceId")
        if given is not None and given != customer.reference_id:
            raise ValidationFailed(
                fields={"customerReferenceId": ["A customer's reference cannot be changed."]}
            )
        customer = customer_update(
            customer=customer, actor=Actor.from_request(request), **body.service_fields()
        )
        return Response(render_customer(customer))
