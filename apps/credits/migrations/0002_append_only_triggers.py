"""The ledger, its consumption rows, weights and prices are never updated.

A trigger refuses UPDATE on them, so no code path (admin, shell, a bug) can
rewrite history. DELETE stays possible: an environment's data is removed with
it (cascade). Weights not yet in force are withdrawn by the service, by delete.
"""

from django.db import migrations

TABLES = (
    "credits_credittransaction",
    "credits_creditconsumption",
    "credits_creditweight",
    "credits_creditprice",
)

FUNCTION_SQL = """
CREATE FUNCTION credits_refuse_update() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""

TRIGGERS_SQL = "\n".join(
    f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
    f"FOR EACH ROW EXECUTE FUNCTION credits_refuse_update();"
    for table in TABLES
)
DROP_TRIGGERS_SQL = "\n".join(
    f"DROP TRIGGER IF EXISTS {table}_no_update ON {table};" for table in TABLES
)


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_initial")]

    operations = [
        migrations.RunSQL(FUNCTION_SQL, reverse_sql="DROP FUNCTION credits_refuse_update();"),
        migrations.RunSQL(TRIGGERS_SQL, reverse_sql=DROP_TRIGGERS_SQL),
    ]
