"""`make test`'s choices (tanso/devservices.py): parallel workers, and test databases
migrated once as a template and copied for each worker instead of migrated per worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from tanso import devservices

ENV = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/tanso", "TEST_DATABASE_NAME": "t"}


@pytest.fixture(autouse=True)
def _two_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TEST_WORKERS", "2")
    monkeypatch.setattr(devservices, "DATA", tmp_path)


def test_ci_clones_a_migrated_template_for_each_worker_and_reuses_the_copies():
    args, keep, clone = devservices.pytest_args(["tests/core"], {**ENV, "CI": "true"})
    assert args == ["--reuse-db", "-n", "2", "--dist", "loadgroup", "tests/core"]
    assert clone == 2
    assert keep is None  # nothing is kept for a later run in CI


def test_workers_chosen_by_the_arguments_migrate_their_own_databases():
    args, keep, clone = devservices.pytest_args(["-n", "0"], {**ENV, "CI": "true"})
    assert (args, keep, clone) == (["-n", "0"], None, 0)
    args, _keep, clone = devservices.pytest_args(["--create-db"], {**ENV, "CI": "true"})
    assert "--reuse-db" not in args and clone == 0


def test_locally_the_copies_are_made_once_and_reused_until_a_migration_changes(tmp_path: Path):
    args, keep, clone = devservices.pytest_args([], ENV)
    assert args[0] == "--reuse-db" and "--create-db" not in args
    assert clone == 2 and keep is not None
    stamp, fingerprint = keep
    stamp.write_text(fingerprint)  # what `make test` does after a run that built them

    args, keep, clone = devservices.pytest_args([], ENV)
    assert args[0] == "--reuse-db" and clone == 0 and keep is not None

    stamp.write_text("an older set of migrations")
    _args, _keep, clone = devservices.pytest_args([], ENV)
    assert clone == 2


def test_the_copies_are_named_as_pytest_django_names_each_workers_database():
    assert devservices.worker_databases("t", 2) == ["t_gw0", "t_gw1"]
    assert devservices.worker_databases("t", 1) == ["t"]
