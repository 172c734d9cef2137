"""Feature services: create, update, and the bulk get-or-create used by ingestion."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from apps.accounts.audit import Actor
from apps.core.errors import Conflict, ValidationFailed
from apps.features.models import Feature
from apps.features.services import feature_create, feature_update, features_ensure
from tests.conftest import make_tenant

SYSTEM = Actor.system()


@pytest.mark.django_db
class TestFeatureCreate:
    def test_creates_a_manual_feature(self, tenant):
        feature = feature_create(
            environment=tenant.test,
            key="ai_summarization",
            name="Summaries",
            unit_label="tokens",
            actor=SYSTEM,
        )
        row = Feature.objects.get(pk=feature.pk)
        assert (row.key, row.name, row.unit_label, row.is_enabled) == (
            "ai_summarization",
            "Summaries",
            "tokens",
            True,
        )
        assert row.source == Feature.Source.MANUAL

    def test_duplicate_key_is_a_conflict(self, tenant):
        feature_create(environment=tenant.test, key="chat", name="Chat", actor=SYSTEM)
        with pytest.raises(Conflict) as caught:
            feature_create(environment=tenant.test, key="chat", name="Other", actor=SYSTEM)
        assert caught.value.code == "feature_exists"
        assert Feature.objects.get(environment=tenant.test, key="chat").name == "Chat"

    def test_claims_a_feature_an_event_created(self, tenant):
        ids = features_ensure(environment=tenant.test, keys=["chat"])
        feature = feature_create(environment=tenant.test, key="chat", name="Chat", actor=SYSTEM)
        assert feature.pk == ids["chat"]
        assert (feature.name, feature.source) == ("Chat", Feature.Source.MANUAL)

    @pytest.mark.parametrize("key", ["", " ", "k" * 129, "a\x00"])
    def test_refuses_impossible_keys(self, tenant, key):
        with pytest.raises(ValidationFailed):
            feature_create(environment=tenant.test, key=key, name="X", actor=SYSTEM)
        assert not Feature.objects.exists()


@pytest.mark.django_db
class TestFeatureUpdate:
    def test_changes_given_fields(self, tenant):
        feature = feature_create(environment=tenant.test, key="chat", name="Chat", actor=SYSTEM)
        feature_update(feature=feature, actor=SYSTEM, is_enabled=False, description="LLM chat")
        row = Feature.objects.get(pk=feature.pk)
        assert (row.is_enabled, row.description, row.name) == (False, "LLM chat", "Chat")
        assert row.updated_at > row.created_at

    def test_refuses_unknown_fields(self, tenant):
        feature = feature_create(environment=tenant.test, key="chat", name="Chat", actor=SYSTEM)
        with pytest.raises(TypeError):
            feature_update(feature=feature, actor=SYSTEM, key="other")


@pytest.mark.django_db
class TestFeaturesEnsure:
    def test_creates_missing_and_returns_existing(self, tenant, django_assert_num_queries):
        existing = feature_create(environment=tenant.test, key="chat", name="Chat", actor=SYSTEM)
        with django_assert_num_queries(2):
            ids = features_ensure(environment=tenant.test, keys=["chat", "search", "search"])
        assert ids["chat"] == existing.pk
        new = Feature.objects.get(pk=ids["search"])
        assert (new.source, new.name, new.is_enabled) == (Feature.Source.EVENT, "search", True)
        assert Feature.objects.get(pk=existing.pk).name == "Chat"

    def test_never_crosses_environments(self, tenant, outsider):
        a = features_ensure(environment=tenant.test, keys=["chat"])["chat"]
        b = features_ensure(environment=tenant.live, keys=["chat"])["chat"]
        c = features_ensure(environment=outsider.test, keys=["chat"])["chat"]
        assert len({a, b, c}) == 3


@pytest.mark.django_db(transaction=True)
def test_eight_threads_create_each_feature_once():
    tenant = make_tenant("Race")
    keys = [f"feature_{n}" for n in range(200)]
    barrier = threading.Barrier(8)
    results: list = [None] * 8
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            mine = keys[:] if index % 2 else keys[::-1]
            barrier.wait()
            # Held transactions: the others block on these rows, then skip them.
            with transaction.atomic():
                results[index] = features_ensure(environment=tenant.test, keys=mine)
                time.sleep(0.05)
        except BaseException as exc:
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    assert all(result == results[0] for result in results)
    assert Feature.objects.filter(environment=tenant.test).count() == len(keys)
