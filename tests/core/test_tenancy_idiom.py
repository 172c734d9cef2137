"""The tenancy rule, checked: every query on tenant-owned rows goes through
``apps.core.tenancy`` (docs/architecture.md, "Tenancy").

Two checks over the source of ``apps/`` (its syntax tree, not its text):

* **ORM**: a ``filter``/``exclude``/``get`` call or a ``Q(...)`` that names the tenant
  by hand (``environment=``, ``environment_id=``, ``environment__in=``, ``organization=``,
  ``organization_id=``, ``environment__...``) is a violation: write
  ``scoped(Model, environment)``, ``Model.objects.for_env(environment)``,
  ``get_scoped_or_404(...)``, ``scoped_to_environments(...)`` or ``scoped_to_org(...)``.
  Creates (``create``, ``get_or_create``, ``bulk_create``, constructors) are not queries.
* **Raw SQL**: a statement that reads, updates or deletes a tenant table (one whose
  model has an ``environment`` or ``organization`` field) must bind the tenant as a
  parameter: ``environment_id = %s`` (or ``%(name)s``, or ``= ANY(%s)``) in the same
  function or module-level constant. ``INSERT`` is a create.

The allow-lists below name each exception and why it may read across tenants.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.apps import apps as django_apps

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "apps"

# The idiom's own definition.
IDIOM = {"apps/core/tenancy.py"}

# ORM sites allowed to name a tenant by hand: (file, function) -> why.
ORM_ALLOWED: dict[tuple[str, str], str] = {
    ("apps/accounts/selectors.py", "audit_log_seen_from"): (
        "the organization's audit log (scoped_to_org), narrowed to one environment's entries"
        " and the organization-level ones (no environment)"
    ),
    ("apps/demo/services.py", "demo_load"): (
        "the signed-in user's own membership (user=), found by its organization's fixed name"
    ),
    ("apps/onboarding/services.py", "bootstrap_account"): (
        "the signed-in user's own owner membership (user=), found by organization name"
    ),
}

# Raw SQL on tenant tables without an environment parameter: (file, name) -> why.
SQL_ALLOWED: dict[tuple[str, str], str] = {
    ("apps/billing/services/statuses.py", "_PAST_DUE"): (
        "a system sweep: due -> past due for every tenant's invoices at once"
    ),
    ("apps/credits/ledger.py", "_GUARD"): (
        "keyed by pool ids that lock_books read (and locked) within the environment"
    ),
    ("apps/credits/ledger.py", "read_books"): (
        "keyed by pool ids just created or locked within the environment by the caller"
    ),
    ("apps/events/services.py", "_SELECT"): (
        "the re-costing sweep: every environment when none is given, else its WHERE gets"
        " environment_id = %(env)s from _filters_sql"
    ),
    ("apps/events/services.py", "_UPDATE_EVENTS"): (
        "keyed by the event ids (and instants) _SELECT locked in the same batch"
    ),
}

TENANT_KEYWORD = re.compile(r"^(environment|organization)(_id)?(__\w+)?$")
QUERY_METHODS = {"filter", "exclude", "get"}
PREDICATE = re.compile(
    r"\benvironment_id\s*(=\s*(%s|%\(\w+\)s|ANY\s*\(\s*%s)|IN\s*\(\s*%s)", re.IGNORECASE
)
ORG_PREDICATE = re.compile(r"\borganization_id\s*=\s*(%s|%\(\w+\)s)", re.IGNORECASE)
READ_VERB = r"\b(FROM|JOIN|UPDATE|DELETE\s+FROM)\s+"


def tenant_tables() -> set[str]:
    tables = set()
    for model in django_apps.get_models():
        names = {field.name for field in model._meta.get_fields()}
        if model._meta.label in {"accounts.Organization", "accounts.Environment"}:
            continue  # the tenants themselves
        if names & {"environment", "organization"} and not model._meta.proxy:
            tables.add(model._meta.db_table)
    return tables


def _unit_of(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node's enclosing top-level definition (function, class or constant) name."""
    owner: dict[ast.AST, str] = {}
    for top in tree.body:
        name = getattr(top, "name", None)
        if name is None and isinstance(top, ast.Assign | ast.AnnAssign):
            targets = top.targets if isinstance(top, ast.Assign) else [top.target]
            name = ",".join(t.id for t in targets if isinstance(t, ast.Name))
        for node in ast.walk(top):
            owner[node] = name or "<module>"
    return owner


def _functions_of(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node's innermost enclosing function name (or the top-level unit's)."""
    owner = _unit_of(tree)
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(fn):
                owner[node] = fn.name
    return owner


def orm_violations(source: str, path: str) -> list[str]:
    """Hand-written tenant filters in ``source``: ``path:line function keyword``."""
    tree = ast.parse(source)
    owner = _functions_of(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in QUERY_METHODS and name != "Q":
            continue
        for keyword in node.keywords:
            allowed = (path, owner[node]) in ORM_ALLOWED
            if keyword.arg and TENANT_KEYWORD.match(keyword.arg) and not allowed:
                found.append(f"{path}:{node.lineno} {owner[node]} {keyword.arg}=")
    return sorted(found, key=lambda line: int(line.split(":")[1].split()[0]))


def sql_violations(source: str, path: str, tables: set[str]) -> list[str]:
    """Raw SQL units (a function or module constant) that read, update or delete a tenant
    table and bind no tenant parameter anywhere in the unit."""
    tree = ast.parse(source)
    table_ref = re.compile(
        READ_VERB + r"(" + "|".join(sorted(map(re.escape, tables))) + r")\b", re.IGNORECASE
    )
    units: dict[str, list[str]] = {}
    for node, name in _unit_of(tree).items():
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            units.setdefault(name, []).append(node.value)
    found = []
    for name, texts in units.items():
        text = "\n".join(texts)
        hit = table_ref.search(text)
        if not hit:
            continue
        if PREDICATE.search(text) or ORG_PREDICATE.search(text):
            continue
        if (path, name) not in SQL_ALLOWED:
            found.append(f"{path} {name}: {hit.group(0)!r}")
    return found


def _sources() -> list[tuple[str, str]]:
    out = []
    for file in sorted(APPS.rglob("*.py")):
        rel = file.relative_to(ROOT).as_posix()
        if "/migrations/" in rel or rel in IDIOM:
            continue
        out.append((rel, file.read_text()))
    return out


def test_orm_queries_on_tenant_rows_go_through_the_idiom() -> None:
    found = []
    for path, source in _sources():
        found += orm_violations(source, path)
    assert found == [], "tenant filters written by hand (use apps.core.tenancy):\n" + "\n".join(
        found
    )


def test_raw_sql_on_tenant_tables_binds_the_environment() -> None:
    tables = tenant_tables()
    assert {"events_event", "billing_invoice", "credits_creditpool"} <= tables
    found = []
    for path, source in _sources():
        found += sql_violations(source, path, tables)
    assert found == [], "raw SQL on tenant tables without a tenant parameter:\n" + "\n".join(found)


def test_every_allowed_site_exists() -> None:
    """An allow-list entry whose site is gone (renamed, converted) must be removed."""
    units = {
        (path, name)
        for path, source in _sources()
        for name in set(_functions_of(ast.parse(source)).values())
    }
    assert set(ORM_ALLOWED) <= units
    assert set(SQL_ALLOWED) <= units


PLANTED_ORM = """
from apps.billing.models import Invoice
from apps.core.tenancy import scoped


def leaky(environment, number):
    return Invoice.objects.filter(environment_id=environment.pk, number=number).first()


def also_leaky(environment):
    return Invoice.objects.get(environment=environment, number="INV-1")


def fine(environment, number):
    return scoped(Invoice, environment).filter(number=number).first()


def creates_are_fine(environment):
    return Invoice.objects.create(environment=environment)
"""

PLANTED_SQL = """
LEAKY = "SELECT count(*) FROM billing_invoice WHERE number = %s"
FINE = "SELECT count(*) FROM billing_invoice WHERE environment_id = %s AND number = %s"
INSERTS = "INSERT INTO billing_invoice (number) VALUES (%s)"


def leaky_update(cur):
    cur.execute("UPDATE credits_creditpool SET balance = 0 WHERE customer_id = %s", [1])
"""


@pytest.mark.parametrize("path", ["apps/planted/services.py"])
def test_the_checks_catch_a_planted_violation(path: str) -> None:
    assert orm_violations(PLANTED_ORM, path) == [
        f"{path}:7 leaky environment_id=",
        f"{path}:11 also_leaky environment=",
    ]
    assert sql_violations(PLANTED_SQL, path, tenant_tables()) == [
        f"{path} LEAKY: 'FROM billing_invoice'",
        f"{path} leaky_update: 'UPDATE credits_creditpool'",
    ]
