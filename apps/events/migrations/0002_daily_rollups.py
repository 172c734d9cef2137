# Daily rollups (day x customer, day x feature x model) beside the hourly one.

import django.db.models.deletion
from django.db import migrations, models

MEASURES = (
    "event_count, usage_units, input_tokens, output_tokens, cache_read_tokens,"
    " cache_write_tokens, reasoning_tokens, cost_usd, revenue_usd, unpriced_count,"
    " revenue_count, duration_ms_sum, duration_count"
)
SUMS = ", ".join(f"sum({name.strip()})" for name in MEASURES.split(","))

# Rollup rows are updated in place by every batch that touches them: leave room
# on each page so the update stays on the page (HOT, no index entry per update).
FILLFACTOR_SQL = """
ALTER TABLE events_hourlyrollup SET (fillfactor = 70);
ALTER TABLE events_dailycustomerrollup SET (fillfactor = 70);
ALTER TABLE events_dailyfeaturemodelrollup SET (fillfactor = 70);
"""
FILLFACTOR_REVERSE_SQL = "ALTER TABLE events_hourlyrollup RESET (fillfactor);"

# The hourly rollups equal a fresh aggregation of the events, so the daily ones
# are their sums.
BACKFILL_SQL = f"""
INSERT INTO events_dailycustomerrollup
    (environment_id, bucket_start, customer_id, last_bucket_start, {MEASURES})
SELECT environment_id, date_trunc('day', bucket_start, 'UTC'), customer_id, max(bucket_start),
       {SUMS}
  FROM events_hourlyrollup
 GROUP BY 1, 2, 3;
INSERT INTO events_dailyfeaturemodelrollup
    (environment_id, bucket_start, feature_id, model, provider, last_bucket_start, {MEASURES})
SELECT environment_id, date_trunc('day', bucket_start, 'UTC'), feature_id, model, provider,
       max(bucket_start), {SUMS}
  FROM events_hourlyrollup
 GROUP BY 1, 2, 3, 4, 5;
"""  # noqa: S608


def _measure_fields():
    return [
        ("event_count", models.BigIntegerField(default=0)),
        ("usage_units", models.DecimalField(decimal_places=12, default=0, max_digits=38)),
        ("input_tokens", models.BigIntegerField(default=0)),
        ("output_tokens", models.BigIntegerField(default=0)),
        ("cache_read_tokens", models.BigIntegerField(default=0)),
        ("cache_write_tokens", models.BigIntegerField(default=0)),
        ("reasoning_tokens", models.BigIntegerField(default=0)),
        ("cost_usd", models.DecimalField(decimal_places=12, default=0, max_digits=38)),
        ("revenue_usd", models.DecimalField(decimal_places=12, default=0, max_digits=38)),
        ("unpriced_count", models.BigIntegerField(default=0)),
        ("revenue_count", models.BigIntegerField(default=0)),
        ("duration_ms_sum", models.BigIntegerField(default=0)),
        ("duration_count", models.BigIntegerField(default=0)),
    ]


def _fk(to):
    return models.ForeignKey(
        db_constraint=False,
        db_index=False,
        on_delete=django.db.models.deletion.DO_NOTHING,
        related_name="+",
        to=to,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("customers", "0001_initial"),
        ("events", "0001_initial"),
        ("features", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyCustomerRollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "environment_id",
                        "bucket_start",
                        "customer_id",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("environment", _fk("accounts.environment")),
                ("bucket_start", models.DateTimeField()),
                ("customer", _fk("customers.customer")),
                ("last_bucket_start", models.DateTimeField()),
                *_measure_fields(),
            ],
            options={"abstract": False},
        ),
        migrations.CreateModel(
            name="DailyFeatureModelRollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "environment_id",
                        "bucket_start",
                        "feature_id",
                        "model",
                        "provider",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("environment", _fk("accounts.environment")),
                ("bucket_start", models.DateTimeField()),
                ("feature", _fk("features.feature")),
                ("model", models.CharField(blank=True, default="", max_length=255)),
                ("provider", models.CharField(blank=True, default="", max_length=64)),
                ("last_bucket_start", models.DateTimeField()),
                *_measure_fields(),
            ],
            options={"abstract": False},
        ),
        migrations.RunSQL(FILLFACTOR_SQL, reverse_sql=FILLFACTOR_REVERSE_SQL),
        migrations.RunSQL(BACKFILL_SQL, reverse_sql=migrations.RunSQL.noop),
    ]
