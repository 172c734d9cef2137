"""Customer services: create, update, and the bulk get-or-create used by ingestion."""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection, transaction

from apps.accounts.audit import Actor
from apps.core.errors import Conflict, ValidationFailed
from apps.customers.models import Customer
from apps.customers.services import customer_create, customer_update, customers_ensure
from tests.conftest import make_tenant
from tests.factories import make_customer

SYSTEM = Actor.system()


@pytest.mark.django_db
class TestCustomerCreate:
    def test_creates_a_manual_customer(self, tenant):
        customer = customer_create(
            environment=tenant.test,
            reference_id="cus_123",
            email="jane@example.com",
            first_name="Jane",
            last_name="Smith",
            metadata={"plan": "pro"},
            actor=SYSTEM,
        )
        row = Customer.objects.get(pk=customer.pk)
        assert row.environment_id == tenant.test.pk
        assert (row.reference_id, row.email, row.first_name, row.last_name) == (
            "cus_123",
            "jane@example.com",
            "Jane",
            "Smith",
        )
        assert row.metadata == {"plan": "pro"}
        assert row.source == Customer.Source.MANUAL

    def test_duplicate_reference_is_a_conflict_and_changes_nothing(self, tenant):
        customer_create(environment=tenant.test, reference_id="cus_1", email="a@x.io", actor=SYSTEM)
        with pytest.raises(Conflict) as caught:
            customer_create(
                environment=tenant.test, reference_id="cus_1", email="b@x.io", actor=SYSTEM
            )
        assert caught.value.code == "customer_exists"
        assert Customer.objects.get(environment=tenant.test, reference_id="cus_1").email == "a@x.io"

    def test_the_conflict_leaves_the_outer_transaction_usable(self, tenant):
        customer_create(environment=tenant.test, reference_id="cus_1", actor=SYSTEM)
        with transaction.atomic():
            with pytest.raises(Conflict):
                customer_create(environment=tenant.test, reference_id="cus_1", actor=SYSTEM)
            # The failed INSERT ran in a savepoint: this transaction can still query.
            assert Customer.objects.filter(environment=tenant.test).count() == 1

    def test_same_reference_in_other_environments_is_independent(self, tenant, outsider):
        for environment in (tenant.test, tenant.live, outsider.test):
            customer_create(environment=environment, reference_id="cus_1", actor=SYSTEM)
        assert Customer.objects.filter(reference_id="cus_1").count() == 3

    def test_claims_a_customer_an_event_created(self, tenant):
        ids = customers_ensure(environment=tenant.test, reference_ids=["cus_123"])
        customer = customer_create(
            environment=tenant.test, reference_id="cus_123", first_name="Jane", actor=SYSTEM
        )
        assert customer.pk == ids["cus_123"]
        assert customer.source == Customer.Source.MANUAL
        assert customer.first_name == "Jane"
        # Once claimed it is registered: a second create is a conflict.
        with pytest.raises(Conflict):
            customer_create(environment=tenant.test, reference_id="cus_123", actor=SYSTEM)

    @pytest.mark.parametrize("reference", ["", "   ", "x" * 256, "a\x00b"])
    def test_refuses_impossible_references(self, tenant, reference):
        with pytest.raises(ValidationFailed) as caught:
            customer_create(environment=tenant.test, reference_id=reference, actor=SYSTEM)
        assert "customerReferenceId" in caught.value.fields
        assert not Customer.objects.exists()

    def test_refuses_a_bad_email(self, tenant):
        with pytest.raises(ValidationFailed) as caught:
            customer_create(
                environment=tenant.test, reference_id="c", email="not-an-email", actor=SYSTEM
            )
        assert "email" in caught.value.fields

    def test_a_reference_of_255_characters_is_fine(self, tenant):
        reference = "r/" + "x" * 253
        customer = customer_create(environment=tenant.test, reference_id=reference, actor=SYSTEM)
        assert customer.reference_id == reference


@pytest.mark.django_db
class TestCustomerUpdate:
    def test_changes_given_fields_and_the_modified_time(self, tenant):
        customer = make_customer(tenant.test, "cus_1", first_name="A", last_name="B")
        before = customer.updated_at
        customer_update(customer=customer, actor=SYSTEM, first_name="Jane", metadata={"k": 1})
        row = Customer.objects.get(pk=customer.pk)
        assert (row.first_name, row.last_name, row.metadata) == ("Jane", "B", {"k": 1})
        assert row.updated_at > before

    def test_refuses_unknown_fields(self, tenant):
        customer = make_customer(tenant.test, "cus_1")
        with pytest.raises(TypeError):
            customer_update(customer=customer, actor=SYSTEM, reference_id="other")

    def test_refuses_a_bad_email(self, tenant):
        customer = make_customer(tenant.test, "cus_1", email="ok@example.com")
        with pytest.raises(ValidationFailed):
            customer_update(customer=customer, actor=SYSTEM, email="nope")
        assert Customer.objects.get(pk=customer.pk).email == "ok@example.com"


@pytest.mark.django_db
class TestCustomersEnsure:
    def test_creates_missing_and_returns_existing(self, tenant, django_assert_num_queries):
        existing = make_customer(tenant.test, "cus_old")
        with django_assert_num_queries(2):  # one INSERT ... ON CONFLICT, one SELECT
            ids = customers_ensure(
                environment=tenant.test, reference_ids=["cus_old", "cus_new", "cus_new", "c/3"]
            )
        assert set(ids) == {"cus_old", "cus_new", "c/3"}
        assert ids["cus_old"] == existing.pk
        new = Customer.objects.get(pk=ids["cus_new"])
        assert new.source == Customer.Source.EVENT
        assert new.environment_id == tenant.test.pk
        assert Customer.objects.get(pk=existing.pk).source == Customer.Source.MANUAL

    def test_is_idempotent(self, tenant):
        first = customers_ensure(environment=tenant.test, reference_ids=["a", "b"])
        second = customers_ensure(environment=tenant.test, reference_ids=["b", "a"])
        assert first == second
        assert Customer.objects.filter(environment=tenant.test).count() == 2

    def test_never_crosses_environments(self, tenant, outsider):
        mine = customers_ensure(environment=tenant.test, reference_ids=["cus_1"])
        live = customers_ensure(environment=tenant.live, reference_ids=["cus_1"])
        theirs = customers_ensure(environment=outsider.test, reference_ids=["cus_1"])
        assert len({mine["cus_1"], live["cus_1"], theirs["cus_1"]}) == 3

    def test_nothing_to_do_costs_no_query(self, tenant, django_assert_num_queries):
        with django_assert_num_queries(0):
            assert customers_ensure(environment=tenant.test, reference_ids=[]) == {}

    def test_refuses_an_impossible_reference_before_writing(self, tenant):
        with pytest.raises(ValidationFailed):
            customers_ensure(environment=tenant.test, reference_ids=["ok", "x" * 256])
        assert not Customer.objects.exists()


def _race(target, count: int) -> list:
    """Run ``target(i)`` in ``count`` threads released together; re-raise any failure."""
    barrier = threading.Barrier(count)
    results: list = [None] * count
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = target(index)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    return results


@pytest.mark.django_db(transaction=True)
class TestCustomersEnsureConcurrency:
    def test_eight_threads_create_each_reference_once(self):
        tenant = make_tenant("Race")
        refs = [f"cus_race_{n}" for n in range(20)]

        def ensure(index: int) -> dict:
            mine = refs[:]
            random.Random(index).shuffle(mine)  # different orders must not deadlock
            return customers_ensure(environment=tenant.test, reference_ids=mine)

        results = _race(ensure, 8)
        assert all(result == results[0] for result in results)
        assert set(results[0]) == set(refs)
        rows = Customer.objects.filter(environment=tenant.test)
        assert rows.count() == len(refs)
        assert set(rows.values_list("id", flat=True)) == set(results[0].values())

    def test_callers_inside_long_transactions_wait_and_then_see_the_winner(self):
        tenant = make_tenant("Race")
        refs = [f"r{n}" for n in range(300)]

        # Big overlapping batches in different orders, each caller holding its transaction
        # open a moment: the others' INSERTs block on its uncommitted rows, then skip them.
        # Without the sorted insert order this deadlocks.
        def ensure(index: int) -> dict:
            mine = refs[:] if index % 2 else refs[::-1]
            if index % 3 == 0:
                random.Random(index).shuffle(mine)
            with transaction.atomic():
                ids = customers_ensure(environment=tenant.test, reference_ids=mine)
                time.sleep(0.05)
            return ids

        results = _race(ensure, 8)
        assert all(result == results[0] for result in results)
        assert set(results[0]) == set(refs)
        assert Customer.objects.filter(environment=tenant.test).count() == len(refs)
