"""Chinese and English for the console: Babel gettext catalogues, chosen per request.

Messages are written in English in the templates and the code (``_("...")``); ``locales/zh_CN/
LC_MESSAGES/messages.po`` translates them. The catalogue is read with Babel when the process
starts (no compiled ``.mo`` file to keep in step). The language is the ``lang`` cookie set by the
language switch, else the best match of the browser's ``Accept-Language``, else Chinese.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES = ("zh_CN", "en")
DEFAULT_LANGUAGE = "zh_CN"
LANG_COOKIE = "sandbox_console_lang"
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}


@cache
def catalogue(language: str) -> dict[str, str]:
    """msgid → msgstr of a language (empty for English, the source language)."""
    path = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=language)
    return {str(m.id): str(m.string) for m in parsed if m.id and m.string and not m.fuzzy}


def negotiate(cookie: str | None, accept_language: str | None) -> str:
    """The language of a request: the cookie's if valid, else the browser's best, else Chinese."""
    if cookie in LANGUAGES:
        return cookie
    preferred = []
    for part in (accept_language or "").split(","):
        tag, _, quality = part.strip().partition(";q=")
        try:
            weight = float(quality) if quality else 1.0
        except ValueError:
            continue
        if tag:
            preferred.append((weight, tag.replace("-", "_")))
    ordered = [tag for _, tag in sorted(preferred, key=lambda p: -p[0])]
    chosen = Locale.negotiate(ordered, list(LANGUAGES), sep="_") if ordered else None
    return str(chosen) if chosen is not None else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Translator:
    """The gettext function and formatters of one language, handed to templates."""

    language: str

    @property
    def html_lang(self) -> str:
        """The ``lang`` attribute of the page."""
        return HTML_LANG[self.language]

    def gettext(self, message: str, **values: object) -> str:
        """``message`` translated, with ``%(name)s`` placeholders filled from ``values``."""
        text = catalogue(self.language).get(message, message)
        return text % values if values else text

    def number(self, value: float, digits: int = 4) -> str:
        """A number in the language's format, at most ``digits`` decimals."""
        return format_decimal(round(value, digits), locale=self.language)

    def when(self, value: datetime | str | None) -> str:
        """A timestamp in the language's medium format (UTC)."""
        if value is None:
            return ""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return format_datetime(moment, "yyyy-MM-dd HH:mm", tzinfo=None, locale=self.language) + " UTC"


def translator(language: str) -> Translator:
    """The translator of a supported language (Chinese for anything else)."""
    return Translator(language if language in LANGUAGES else DEFAULT_LANGUAGE)


def lazy(message: str) -> str:
    """Marks a message for extraction where it is defined; translated where it is shown."""
    return message


VOCABULARY = (  # values shown translated: classifications, column roles, states, user roles, series
    lazy("general"),
    lazy("important"),
    lazy("core"),
    lazy("privacy_unit"),
    lazy("identifier"),
    lazy("dimension"),
    lazy("measure"),
    lazy("pending"),
    lazy("approved"),
    lazy("rejected"),
    lazy("active"),
    lazy("revoked"),
    lazy("expired"),
    lazy("reserved"),
    lazy("answered"),
    lazy("failed"),
    lazy("refused"),
    lazy("analyst"),
    lazy("owner"),
    lazy("operator"),
)
