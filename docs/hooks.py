"""mkdocs hooks: pages whose content is generated from the code when the site is built."""

from __future__ import annotations

from typing import Any

#: A page holding this marker gets the ``[resumable]`` options table in its place.
CONFIG_MARKER = "<!-- config-reference -->"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    if CONFIG_MARKER not in markdown:
        return markdown
    from resumable.provider import config_reference

    return markdown.replace(CONFIG_MARKER, config_reference())
