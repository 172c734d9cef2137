"""How far the demo history of an environment has been generated (see ``history.py``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class DemoHistory(models.Model):
    """The demo generator's cursor for one environment: which generator version made the
    history, the first day it covers and the first day it does not cover yet. A load
    with the same version on a day already covered does nothing at all."""

    environment = models.OneToOneField(
        "accounts.Environment", on_delete=models.CASCADE, related_name="+"
    )
    version = models.PositiveIntegerField()
    starts_on = models.DateField()
    loaded_through = models.DateField()  # exclusive: days before it are generated
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"demo v{self.version} {self.starts_on}..{self.loaded_through}"
