"""Text from a person or an advisor made safe to print.  Only `re`: `tinybot kill` and `status` print with it."""

from __future__ import annotations

import re

REASON_MAX = 2000  # characters in a reason (a proposal's, a kill's): a person reads it on one screen
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """Show control characters (escape sequences, carriage returns, newlines) as visible escapes, e.g. ``\\x1b``.

    A reason comes from a person or an LLM; printed raw, an escape sequence
    could rewrite the terminal (hide a line, fake a status).
    """
    return _CONTROL.sub(
        lambda m: {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(m.group(), f"\\x{ord(m.group()):02x}"), text
    )
