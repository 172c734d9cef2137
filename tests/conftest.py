"""Shared fixtures: personas (owner, member, viewer, outsider), both environments,
API clients holding real keys, a clean Redis per test, and a real Celery worker.

Under pytest-xdist each worker has its own test database and its own Redis database
(``REDIS_URL`` is chosen per worker in tanso/settings.py), so flushing "the" Redis
database here touches only this worker's."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.backends.postgresql.operations import DatabaseOperations as PostgresOperations
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.models import Environment, Membership, Organization, Role, User
from apps.core import memo, ratelimit
from apps.core.redis import get_redis
from tests.factories import UserFactory, env_of, make_key, make_org

# The Stripe peer (localstripe on 127.0.0.1): `stripe_peer`, `stripe_webhooks`.
pytest_plugins = ["tests.stripe_peer.fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``heavy`` (tens of seconds or more each) first: pytest-xdist hands
    tests out in this order, and a long one handed out last leaves the other workers idle."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


def _forget_process_state() -> None:
    memo.clear_all()
    ratelimit.reset_local()


def _sql_flush_filled_tables(
    ops: PostgresOperations,
    style: Any,
    tables: list[str],
    *,
    reset_sequences: bool = False,
    allow_cascade: bool = False,
) -> list[str]:
    """Django's flush after each transactional test, as DELETEs of the tables holding rows.

    Django truncates every table (about 140): PostgreSQL gives each table and index new
    files, which took 1-8 s per test (over 200 such tests). The few tables a test filled
    are emptied by DELETE in milliseconds, leaving the same empty tables. The foreign keys
    are DEFERRABLE INITIALLY DEFERRED (Django creates them so), so the order does not
    matter: they are checked at commit, once every filled table is empty."""
    if reset_sequences or not tables:
        return _django_sql_flush(
            ops, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade
        )
    # Table names come from Django's introspection, quoted: no injection (S608).
    quote = ops.quote_name
    probe = " UNION ALL ".join(
        f"SELECT {i} WHERE EXISTS (SELECT FROM {quote(table)})"  # noqa: S608
        for i, table in enumerate(tables)
    )
    with ops.connection.cursor() as cursor:
        cursor.execute(probe)
        filled = [tables[i] for (i,) in cursor.fetchall()]
    return [f"DELETE FROM {quote(table)}" for table in filled]  # noqa: S608


_django_sql_flush = PostgresOperations.sql_flush


@pytest.fixture(scope="session", autouse=True)
def _flush_only_filled_tables() -> Iterator[None]:
    PostgresOperations.sql_flush = _sql_flush_filled_tables  # type: ignore[method-assign]
    yield
    PostgresOperations.sql_flush = _django_sql_flush  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _clean_redis_and_key_cache() -> Iterator[None]:
    get_redis().flushdb()
    _forget_process_state()
    yield
    _forget_process_state()


@dataclasses.dataclass
class Tenant:
    """One organization with its people, environments and secret keys."""

    org: Organization
    owner: User
    test: Environment
    live: Environment
    sk_test: str
    sk_live: str

    def api(self, key: str | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key or self.sk_test}")
        return client

    def add_member(self, role: str = Role.MEMBER) -> User:
        user = UserFactory()
        Membership.objects.create(organization=self.org, user=user, role=role)
        return user


def make_tenant(name: str = "Acme") -> Tenant:
    owner = UserFactory()
    org = make_org(owner, name=name)
    test, live = env_of(org, "test"), env_of(org, "live")
    return Tenant(
        org=org,
        owner=owner,
        test=test,
        live=live,
        sk_test=make_key(test, "sk").plaintext,
        sk_live=make_key(live, "sk").plaintext,
    )


@pytest.fixture
def tenant(db: Any) -> Tenant:
    return make_tenant("Acme")


@pytest.fixture
def outsider(db: Any) -> Tenant:
    """Another organization: it must never see the tenant's data, nor the reverse."""
    return make_tenant("Outsider Inc")


@pytest.fixture
def web(tenant: Tenant) -> Client:
    """A browser session signed in as the tenant's owner."""
    client = Client()
    client.force_login(tenant.owner)
    return client


def web_as(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def celery_worker(transactional_db: Any) -> Iterator[Any]:
    """A real Celery worker (threads) consuming from the real Redis broker."""
    from celery.contrib.testing.worker import start_worker

    from tanso.celery import app

    app.conf.task_always_eager = False
    with start_worker(
        app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING"
    ) as worker:
        yield worker
