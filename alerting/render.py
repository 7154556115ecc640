"""Notice texts: Jinja2 templates per language (``templates/fa.j2``, ``templates/en.j2``).

Each kind of notice has three blocks: ``<kind>_subject``, ``<kind>_text`` (the
email body, also sent as right-to-left HTML for Persian) and ``<kind>_sms``
(kept within the channel's segment budget, with a short link to the status
page).  Values are formatted for the language before rendering: Jalali
dates, Tehran time and Persian digits for ``fa``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from alerting.sms import fit
from core.timefmt import jalali, persian_digits
from store.contract import Notice

TEMPLATES = Path(__file__).resolve().parent / "templates"
KINDS = ("outage_opened", "outage_closed", "maintenance_announced", "maintenance_reminder", "maintenance_started",
         "maintenance_ended", "maintenance_overran", "sla_at_risk", "credit_issued", "flapping",
         "subscription_confirm", "test", "location_silent", "location_back")
_TEXT = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                           undefined=jinja2.StrictUndefined)
_HTML = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    sms: str
    html: str


def when(ms: int, lang: str) -> str:
    """An instant as people read it: Jalali date and Tehran time, Persian digits for fa."""
    text = jalali(ms)
    return persian_digits(text) if lang == "fa" else text


def span(seconds: float, lang: str) -> str:
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    if lang == "fa":
        text = f"{hours} ساعت و {minutes} دقیقه" if hours else f"{minutes} دقیقه"
        return persian_digits(text)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def render(kind: str, lang: str, context: dict[str, Any]) -> Rendered:
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")
    template = _TEXT.get_template(f"{lang}.j2")

    def block(name: str) -> str:
        return "".join(template.blocks[f"{kind}_{name}"](template.new_context(dict(context)))).strip()

    subject, text, sms = block("subject"), block("text"), block("sms")
    html = _HTML.get_template("email.html.j2").render(lang=lang, subject=subject, lines=text.splitlines())
    return Rendered(subject, text, sms, html)


def notice(kind: str, event: str, channel_id: str, channel_kind: str, recipient: str, lang: str,
           context: dict[str, Any], max_segments: int = 2) -> Notice:
    """The notice one recipient gets: the same words for everyone in the same language."""
    rendered = render(kind, lang, context)
    if channel_kind == "sms":
        link = f" {context.get('status_url', '')}" if context.get("status_url") else ""
        return Notice(event, channel_id, recipient, lang, rendered.subject, fit(rendered.sms, max_segments, link))
    return Notice(event, channel_id, recipient, lang, rendered.subject, rendered.text,
                  rendered.html if channel_kind == "email" else None)
