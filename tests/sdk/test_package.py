"""The package as a user gets it: its wheel installed into a clean virtualenv, typed
for ``mypy --strict`` consumers, and working against the server with nothing else."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from apps.events.models import Event
from tests.conftest import Tenant

CONSUMER = """
from decimal import Decimal

import tansohq


def record(tanso: tansohq.Tanso) -> str:
    key: str = tanso.track(
        event_name="chat",
        customer_reference_id="cus_typed",
        feature_key="chat",
        cost_amount=Decimal("0.25"),
    )
    return key


def main(url: str, api_key: str) -> None:
    tanso = tansohq.Tanso(api_key, base_url=url, sync_delivery=True)
    key = record(tanso)
    try:
        tanso.customers.retrieve("cus_nobody")
    except tansohq.NotFoundError as error:
        assert error.status_code == 404
    customer: dict[str, object] = tanso.customers.retrieve("cus_typed")
    print(key, customer["customerReferenceId"], tanso.close(timeout=5))


if __name__ == "__main__":
    import sys

    main(sys.argv[1], sys.argv[2])
"""


@pytest.fixture(scope="module")
def clean_venv(sdk_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         str(sdk_wheel)],
        check=True,
    )  # fmt: skip
    return python


def test_the_wheel_installs_alone_and_types_strictly(clean_venv: Path, tmp_path: Path) -> None:
    freeze = subprocess.run(
        [str(clean_venv), "-m", "pip", "freeze"], check=True, capture_output=True, text=True
    ).stdout
    assert "tansohq @ file:" in freeze and ".whl" in freeze
    assert "openai" not in freeze and "anthropic" not in freeze and "Django" not in freeze
    consumer = tmp_path / "consumer.py"
    consumer.write_text(CONSUMER)
    (tmp_path / "mypy.ini").write_text("[mypy]\n")
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--config-file",
         str(tmp_path / "mypy.ini"), "--python-executable", str(clean_venv), str(consumer)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_installed_package_talks_to_the_server(
    clean_venv: Path, tmp_path: Path, acme: Tenant, live_server: Any
) -> None:
    consumer = tmp_path / "consumer.py"
    consumer.write_text(CONSUMER)
    run = subprocess.run(
        [str(clean_venv), str(consumer), live_server.url, acme.sk_test],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    key, reference, closed = run.stdout.split()
    assert (reference, closed) == ("cus_typed", "True")
    event = Event.objects.get(environment_id=acme.test.pk, idempotency_key=key)
    assert event.cost_usd == Decimal("0.25")
