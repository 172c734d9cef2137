# The API key that wrote each event, and the key as the hourly rollup's last key column.
#
# Sized for a large ledger: both ADD COLUMNs only change the catalog (PostgreSQL >= 11: a
# nullable column without default, and a NOT NULL column with a constant default, rewrite
# no row; on the partitioned events_event it reaches every partition the same way). The
# rollup's wider primary key is built CONCURRENTLY (no lock on writers while it builds),
# then swapped in with a short lock: the migration is not atomic for that reason.
# Existing events keep api_key_id NULL (no key recorded) and their rollup rows the nil
# UUID (models.NO_API_KEY), which is what new events no key wrote get too.
#
# Deploy note: the release phase (Procfile) migrates before the new processes start; a
# process still running the previous code between the swap and its restart fails its
# stores (their ON CONFLICT names the old key) and the clients retry.

import uuid

import django.db.models.deletion
from django.db import migrations, models

NIL = "00000000-0000-0000-0000-000000000000"
OLD_KEY = "environment_id, bucket_start, customer_id, feature_id, model, provider"
MEASURES = (
    "event_count, usage_units, input_tokens, output_tokens, cache_read_tokens,"
    " cache_write_tokens, reasoning_tokens, cost_usd, revenue_usd, unpriced_count,"
    " revenue_count, duration_ms_sum, duration_count"
)
SUMS = ", ".join(f"sum({name.strip()}) AS {name.strip()}" for name in MEASURES.split(","))

# Reverse: one row per old key again (the keys' rows summed), then the old primary key.
COLLAPSE_SQL = f"""
CREATE TEMP TABLE _hourly_by_old_key AS
SELECT {OLD_KEY}, {SUMS} FROM events_hourlyrollup GROUP BY {OLD_KEY};
DELETE FROM events_hourlyrollup;
ALTER TABLE events_hourlyrollup DROP CONSTRAINT events_hourlyrollup_pkey;
ALTER TABLE events_hourlyrollup DROP COLUMN api_key_id;
INSERT INTO events_hourlyrollup ({OLD_KEY}, {MEASURES}) SELECT * FROM _hourly_by_old_key;
DROP TABLE _hourly_by_old_key;
ALTER TABLE events_hourlyrollup ADD CONSTRAINT events_hourlyrollup_pkey PRIMARY KEY ({OLD_KEY});
"""  # noqa: S608


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("apikeys", "0001_initial"),
        ("events", "0003_revenue_source_plan_rule"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="event",
                    name="api_key",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="apikeys.apikey",
                    ),
                ),
                migrations.AddField(
                    model_name="hourlyrollup",
                    name="api_key_id",
                    field=models.UUIDField(db_default=uuid.UUID(NIL), default=uuid.UUID(NIL)),
                ),
                migrations.AlterField(
                    model_name="hourlyrollup",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "environment_id",
                        "bucket_start",
                        "customer_id",
                        "feature_id",
                        "model",
                        "provider",
                        "api_key_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    "ALTER TABLE events_event ADD COLUMN api_key_id uuid NULL",
                    reverse_sql="ALTER TABLE events_event DROP COLUMN api_key_id",
                ),
                migrations.RunSQL(
                    "ALTER TABLE events_hourlyrollup"
                    f" ADD COLUMN api_key_id uuid NOT NULL DEFAULT '{NIL}'",
                    reverse_sql=COLLAPSE_SQL,
                ),
                migrations.RunSQL(
                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_hourlyrollup_key"
                    f" ON events_hourlyrollup ({OLD_KEY}, api_key_id)",
                    reverse_sql=migrations.RunSQL.noop,
                ),
                migrations.RunSQL(
                    "ALTER TABLE events_hourlyrollup DROP CONSTRAINT events_hourlyrollup_pkey,"
                    " ADD CONSTRAINT events_hourlyrollup_pkey PRIMARY KEY"
                    " USING INDEX events_hourlyrollup_key",
                    reverse_sql=migrations.RunSQL.noop,
                ),
            ],
        ),
    ]
