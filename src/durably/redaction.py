"""Redacting secrets from stored errors: ``Durably(redact=...)``.

Error messages and tracebacks of failed steps, compensations and workflows are stored
(and shown by the CLI and the dashboard). A step that raises
``PaymentError("card 4242... rejected, key sk_live_abc")`` would put the key in the
database. ``redact`` rewrites that text before it is stored:

* a regular expression (text or compiled): each match becomes ``[REDACTED]``; with
  capture groups, only what the groups captured does (``r"password=(\\S+)"`` keeps
  ``password=``);
* a function ``str -> str``: its result is stored;
* or a list of these, applied in order.

Only the stored copy changes: the live exception a step raises is untouched, so code
inside the workflow that catches it sees the original. A replayed step re-raises the
stored, redacted error. If a redaction function fails, the whole text is replaced
(a secret is never stored because a redactor broke).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TypeAlias

from durably.errors import ConfigurationError

#: What replaces each redacted piece of text.
REDACTED = "[REDACTED]"

#: One redaction rule: a pattern (text or compiled) or a function ``str -> str``.
Rule: TypeAlias = str | re.Pattern[str] | Callable[[str], str]
#: What ``Durably(redact=...)`` takes: one rule or a sequence of rules.
Redaction: TypeAlias = Rule | Sequence[Rule]


class Redactor:
    """Applies redaction rules to text, in order.

    Args:
        rules: A pattern (text or compiled), a function ``str -> str``, or a sequence
            of these.

    Raises:
        ConfigurationError: a pattern does not compile, is not text, or matches empty
            text (it would redact between every character); a rule is neither a
            pattern nor callable; there is no rule.
    """

    def __init__(self, rules: Redaction) -> None:
        listed: Sequence[object] = (
            [rules] if isinstance(rules, str | re.Pattern) or callable(rules) else rules
        )
        if isinstance(listed, bytes) or not isinstance(listed, Sequence) or not listed:
            raise ConfigurationError(
                f"redact must be a pattern, a function str -> str, or a non-empty list of "
                f"them, got {rules!r}"
            )
        self._rules: list[re.Pattern[str] | Callable[[str], str]] = [
            _checked(rule, index) for index, rule in enumerate(listed)
        ]

    def __call__(self, text: str) -> str:
        """``text`` with every rule applied; fully replaced if a function rule fails."""
        for rule in self._rules:
            if isinstance(rule, re.Pattern):
                text = rule.sub(_replacement, text)
                continue
            try:
                redacted = rule(text)
            except Exception as error:
                return f"{REDACTED} (the redaction function raised {type(error).__name__})"
            if not isinstance(redacted, str):
                return f"{REDACTED} (the redaction function returned {type(redacted).__name__})"
            text = redacted
        return text


def _checked(rule: object, index: int) -> re.Pattern[str] | Callable[[str], str]:
    if isinstance(rule, str):
        try:
            rule = re.compile(rule)
        except re.error as error:
            raise ConfigurationError(f"redact[{index}] is not a valid pattern: {error}") from None
    if isinstance(rule, re.Pattern):
        if not isinstance(rule.pattern, str):
            raise ConfigurationError(f"redact[{index}] must be a text pattern, not bytes")
        if rule.search("") is not None:
            raise ConfigurationError(
                f"redact[{index}] ({rule.pattern!r}) matches empty text: it would redact "
                f"between every character; make it match the secret itself"
            )
        return rule
    if callable(rule):
        return rule
    raise ConfigurationError(
        f"redact[{index}] must be a pattern or a function str -> str, got {rule!r}"
    )


def _replacement(match: re.Match[str]) -> str:
    """The whole match redacted, or only its captured groups when it has some."""
    if match.re.groups == 0:
        return REDACTED
    text, start, pieces = match.group(0), match.start(), []
    position = 0
    for group in range(1, match.re.groups + 1):
        begin, end = match.span(group)
        if begin < 0 or begin - start < position:  # not captured, or nested in the last
            continue
        pieces.append(text[position : begin - start])
        pieces.append(REDACTED)
        position = end - start
    pieces.append(text[position:])
    return "".join(pieces)


class RedactingFormatter:
    """An error formatter that redacts what it stores; the stored traceback too.

    Args:
        redact: The rules (see :class:`Redactor`).
        formatter: The app's own ``error_formatter``, whose output is redacted. Without
            one, ``str(error)`` is redacted whole and then cut at ``max_length``
            characters (as the default formatter cuts), so that no cut splits a secret
            before its pattern could match.
        max_length: Where the default formatting cuts the message.
    """

    def __init__(
        self,
        redact: Redaction,
        formatter: Callable[[BaseException], str] | None = None,
        *,
        max_length: int = 1_000,
    ) -> None:
        self.redact = redact if isinstance(redact, Redactor) else Redactor(redact)
        self._formatter = formatter
        self._max_length = max_length

    def __call__(self, error: BaseException) -> str:
        """The stored message of ``error``, redacted."""
        if self._formatter is not None:
            return self.redact(self._formatter(error))
        text = self.redact(str(error))
        return text if len(text) <= self._max_length else text[: self._max_length] + "…"
