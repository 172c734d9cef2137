"""The shipped pairs of comparable models (editable per environment: ComparableModel).

Each pair is a model and a smaller one of the same family and provider that often does
the same work; the advice reprices real token counts with the catalog for each pair, so
a pair whose prices are missing from the catalog simply yields nothing."""

from __future__ import annotations

from django.db import migrations

DEFAULTS = [
    ("openai", "gpt-4o", "openai", "gpt-4o-mini", "the small model of the same generation"),
    ("openai", "gpt-4.1", "openai", "gpt-4.1-mini", "the small model of the same generation"),
    ("openai", "gpt-4.1-mini", "openai", "gpt-4.1-nano", "the smallest of the generation"),
    ("openai", "gpt-5", "openai", "gpt-5-mini", "the small model of the same generation"),
    ("openai", "gpt-5-mini", "openai", "gpt-5-nano", "the smallest of the generation"),
    ("openai", "o3", "openai", "o4-mini", "a smaller reasoning model"),
    ("anthropic", "claude-opus-4-1", "anthropic", "claude-sonnet-4-5", "the mid-size model"),
    ("anthropic", "claude-sonnet-4-5", "anthropic", "claude-haiku-4-5", "the small model"),
    ("anthropic", "claude-sonnet-4-0", "anthropic", "claude-3-5-haiku-latest", "the small model"),
    ("google", "gemini-2.5-pro", "google", "gemini-2.5-flash", "the fast model"),
    ("google", "gemini-2.5-flash", "google", "gemini-2.5-flash-lite", "the lite model"),
]


def load(apps, schema_editor):
    model = apps.get_model("recommendations", "DefaultComparableModel")
    model.objects.bulk_create(
        [
            model(
                from_provider=fp, from_model=fm, to_provider=tp, to_model=tm, note=note
            )
            for fp, fm, tp, tm, note in DEFAULTS
        ],
        ignore_conflicts=True,
    )


def unload(apps, schema_editor):
    model = apps.get_model("recommendations", "DefaultComparableModel")
    for fp, fm, tp, tm, _note in DEFAULTS:
        model.objects.filter(
            from_provider=fp, from_model=fm, to_provider=tp, to_model=tm
        ).delete()


class Migration(migrations.Migration):
    dependencies = [("recommendations", "0001_initial")]

    operations = [migrations.RunPython(load, unload)]
