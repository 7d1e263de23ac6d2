"""Params: whole numbers in a request's query, written in ASCII digits and nothing else.

``str.isdigit()`` also takes superscripts (``²``) and circled digits (``①``), which ``int()``
then refuses (a 500 where nothing catches it); ``int()`` itself reads the digits of other scripts
(Arabic-Indic ``٣``), underscores and surrounding spaces; a regular expression's ``\\d`` takes
other scripts' digits too. None of them alone says what a number in a URL is.
"""

from __future__ import annotations


def whole_number(raw: str, max_digits: int = 18) -> int | None:
    """``raw`` as a whole number, or None unless it is 1 to ``max_digits`` ASCII digits."""
    if not 0 < len(raw) <= max_digits or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)
