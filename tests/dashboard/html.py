"""Reading the dashboard's HTML in tests: tags and their attributes (stdlib parser).

Pages carry stable ``data-*`` attributes on the elements that hold figures, so
tests compare exact decimal strings, not formatted text.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def tags(content: bytes | str) -> list[tuple[str, dict[str, str]]]:
    parser = _Collector()
    parser.feed(content.decode() if isinstance(content, bytes) else content)
    return parser.tags


def find_all(content: Any, tag: str | None = None, **attrs: str | None) -> list[dict[str, str]]:
    """Attributes of every ``tag`` whose attributes match (``data_x="v"`` is ``data-x``;
    None means "present, any value")."""
    wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
    found = []
    for name, have in tags(content):
        if tag is not None and name != tag:
            continue
        if all(k in have and (v is None or have[k] == v) for k, v in wanted.items()):
            found.append(have)
    return found


def find_one(content: Any, tag: str | None = None, **attrs: str | None) -> dict[str, str]:
    found = find_all(content, tag, **attrs)
    assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
    return found[0]
