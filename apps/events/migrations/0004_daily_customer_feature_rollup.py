# The day x customer x feature x model rollup (the customer page's breakdown),
# created and filled from the hourly rollup.

import django.db.models.deletion
from django.db import migrations, models

MEASURES = (
    "event_count, usage_units, input_tokens, output_tokens, cache_read_tokens,"
    " cache_write_tokens, reasoning_tokens, cost_usd, revenue_usd, unpriced_count,"
    " revenue_count, duration_ms_sum, duration_count"
)
SUMS = ", ".join(f"sum({name.strip()})" for name in MEASURES.split(","))

# Updated in place by every batch that touches a row, like the other rollups
# (0002): room on each page keeps the update on the page.
FILLFACTOR_SQL = "ALTER TABLE events_dailycustomerfeaturerollup SET (fillfactor = 70);"

# The hourly rollup equals a fresh aggregation of the events, so this one is its
# sums. Inserted in primary-key order: one customer's window is then a run of
# adjacent heap pages.
BACKFILL_SQL = f"""
INSERT INTO events_dailycustomerfeaturerollup
    (environment_id, customer_id, bucket_start, feature_id, model, provider, last_bucket_start,
     {MEASURES})
SELECT environment_id, customer_id, date_trunc('day', bucket_start, 'UTC'), feature_id, model,
       provider, max(bucket_start), {SUMS}
  FROM events_hourlyrollup
 GROUP BY 1, 2, 3, 4, 5, 6
 ORDER BY 1, 2, 3, 4, 5, 6;
ANALYZE events_dailycustomerfeaturerollup;
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
        ("events", "0003_revenue_source_plan_rule"),
        ("features", "0001_initial"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyCustomerFeatureRollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "environment_id",
                        "customer_id",
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
                ("customer", _fk("customers.customer")),
                ("bucket_start", models.DateTimeField()),
                ("feature", _fk("features.feature")),
                ("model", models.CharField(blank=True, default="", max_length=255)),
                ("provider", models.CharField(blank=True, default="", max_length=64)),
                ("last_bucket_start", models.DateTimeField()),
                *_measure_fields(),
            ],
            options={"abstract": False},
        ),
        migrations.RunSQL(FILLFACTOR_SQL, reverse_sql=migrations.RunSQL.noop),
        migrations.RunSQL(BACKFILL_SQL, reverse_sql=migrations.RunSQL.noop),
    ]
