"""Every message the console shows has its Chinese translation, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from sandbox.console import i18n

CONSOLE = Path(i18n.__file__).parent
MESSAGE = re.compile(r"""(?:(?<![\w.])_|gettext|lazy)\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def messages() -> set[str]:
    """Every literal passed to ``_``, ``gettext`` or ``lazy`` in the console's code and templates."""
    found: set[str] = set()
    for source in [*CONSOLE.rglob("*.py"), *CONSOLE.rglob("*.html")]:
        for match in MESSAGE.finditer(source.read_text(encoding="utf-8")):
            found.add(match.group(1) if match.group(1) is not None else match.group(2))
    found.discard("...")  # the docstring's example
    return found


def test_every_message_has_a_chinese_translation() -> None:
    chinese = i18n.catalogue("zh_CN")
    found = messages()
    assert len(found) > 150
    missing = sorted(m for m in found if not chinese.get(m))
    assert missing == []
    for message in found:
        assert set(PLACEHOLDER.findall(message)) == set(PLACEHOLDER.findall(chinese[message])), message


def test_the_catalogue_has_no_stale_messages() -> None:
    assert sorted(set(i18n.catalogue("zh_CN")) - messages()) == []


def test_translation_fills_placeholders() -> None:
    zh = i18n.translator("zh_CN")
    assert (
        zh.gettext("%(org)s asks for access to %(dataset)s", org="acme", dataset="pums")
        == "acme 申请访问 pums"
    )
    assert i18n.translator("en").gettext("Sign in") == "Sign in"
    assert i18n.negotiate(None, "en-US,en;q=0.9,zh;q=0.5") == "en"
    assert i18n.negotiate(None, "zh-TW") == "zh_CN"
    assert i18n.negotiate("en", "zh-CN") == "en"
