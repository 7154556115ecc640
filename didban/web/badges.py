"""Status badges: a service's state now and its month-to-date availability, as small SVGs.

For the agency's own site and README files, as users of Gatus and Uptime Kuma
expect.  The figures are the status board's (the settlement's month so far,
truncated); badges are cacheable for a minute.  Persian by default, English
with ``?lang=en``; text is escaped and the width follows the text.
"""

from __future__ import annotations

from markupsafe import escape

from didban.web.i18n import label, numbers

COLOURS = {"up": "#0b6b2b", "down": "#a4161a", "met": "#0b6b2b", "missed": "#a4161a"}
GREY = "#555"


def _width(text: str) -> int:
    return 12 + 7 * len(text)


def badge_svg(left: str, right: str, colour: str, lang: str) -> str:
    """A two-part badge (label | value); right to left in Persian."""
    left_w, right_w = _width(left), _width(right)
    first, second = (right, left) if lang == "fa" else (left, right)
    first_w, second_w = (right_w, left_w) if lang == "fa" else (left_w, right_w)
    first_fill, second_fill = (colour, GREY) if lang == "fa" else (GREY, colour)
    total = first_w + second_w
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{escape(left)}: {escape(right)}"><title>{escape(left)}: {escape(right)}</title>'
        f'<rect width="{first_w}" height="20" fill="{first_fill}"/>'
        f'<rect x="{first_w}" width="{second_w}" height="20" fill="{second_fill}"/>'
        f'<g fill="#fff" font-family="Vazirmatn,Tahoma,DejaVu Sans,sans-serif" font-size="11" text-anchor="middle">'
        f'<text x="{first_w / 2}" y="14">{escape(first)}</text>'
        f'<text x="{first_w + second_w / 2}" y="14">{escape(second)}</text></g></svg>'
    )


def state_badge(state: str, lang: str) -> str:
    key = {"up": "state_up", "down": "state_down", "unknown": "state_unknown"}.get(state, "state_no_data")
    return badge_svg(label("badge_state", lang), label(key, lang), COLOURS.get(state, GREY), lang)


def availability_badge(availability: str, verdict: str, lang: str) -> str:
    value = numbers(f"{availability}%" if lang == "en" else f"{availability}٪", lang)
    return badge_svg(label("badge_month", lang), value, COLOURS.get(verdict, GREY), lang)
