"""Idempotency records belong to the API key that made them.

Stored answers without an owner cannot be replayed safely to anyone, so they are
dropped (they live 24 h at most; a retry after the deploy runs again). Going back
drops the per-key records too: the old unique key (environment, key) could not
hold two keys' records.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def _drop_records(apps: Any, schema_editor: Any) -> None:
    apps.get_model("apikeys", "IdempotencyRecord").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("apikeys", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(_drop_records, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="idempotencyrecord",
            name="idempotency_env_key_unique",
        ),
        migrations.AddField(
            model_name="idempotencyrecord",
            name="api_key",
            field=models.ForeignKey(
                db_index=False,
                default=None,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="apikeys.apikey",
            ),
            preserve_default=False,
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(
                fields=("environment", "api_key", "key"),
                name="idempotency_env_apikey_key_unique",
            ),
        ),
        migrations.RunPython(migrations.RunPython.noop, _drop_records),
    ]
