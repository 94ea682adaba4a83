# SPDX-License-Identifier: Apache-2.0
"""One check for "the `veil` CLI refused, for reason R" (issue 17): a refusal test is only worth its reason.

    from refusal import assert_refused, refusal_problems

    r = subprocess.run([veil, "unseal", ...], capture_output=True, text=True)
    assert_refused(r, "key unwrap failed")               # a substring of the message
    assert_refused(r, re.compile(r"truncated|padding"))  # or a regex, searched in the message

A refusal is: the process exited (never death by a signal) with status 1, wrote exactly one line on stderr, that
line is `veil: error: <message>`, and <message> holds the reason. A usage error is asked for with exit_code=2: then
stderr is `veil <command>: <message>` followed by the pointer to --help (`Try 'veil <command> --help'.`, or the
usage text for an unknown command), as src/veil/main.c cli_usage_error writes it, or only the usage text (the
message is then its first line, `usage: veil ...`).

The reason is required: there is no "refused for any reason". A message saying the refusal came before the check
(NOT_THE_CHECK: a file that cannot be opened, a usage slip; not applied to usage errors) fails unless the reason
itself asks for it, and `not_reason` names further messages that must not be the cause even when the reason matches.
"""

from __future__ import annotations

import re
import signal
from typing import Protocol, Union

PREFIX = "veil: error: "
USAGE_LINE = re.compile(r"^veil(?P<cmd>(?: [a-z][a-z0-9-]*)*): (?P<message>.+)$")
Reason = Union[str, re.Pattern]

# Messages that mean the refusal happened before the check a test is about: a missing or unreadable file, a
# usage slip. Every exit-1 check forbids them unless the reason itself asks for them.
NOT_THE_CHECK = re.compile(r"cannot open|cannot stat|no such file|permission denied|usage:", re.IGNORECASE)


class _Result(Protocol):
    stderr: str


def _code(r: object) -> int:
    code = getattr(r, "returncode", None)
    if code is None:
        code = getattr(r, "rc")
    return int(code)


def _matches(reason: Reason, message: str) -> bool:
    if isinstance(reason, re.Pattern):
        return reason.search(message) is not None
    return reason in message


def _describe(reason: Reason) -> str:
    return f"/{reason.pattern}/" if isinstance(reason, re.Pattern) else repr(reason)


def refusal_message(r: _Result) -> str | None:
    """The text after `veil: error: ` when stderr is exactly one such line, else None."""
    lines = r.stderr.splitlines()
    if len(lines) != 1 or not lines[0].startswith(PREFIX):
        return None
    return lines[0][len(PREFIX):]


def usage_message(r: _Result) -> str | None:
    """The message of a usage error (`veil <command>: <message>` then the --help pointer), else None."""
    lines = r.stderr.splitlines()
    if lines and lines[0].startswith("usage: veil"):  # a command that needs a subcommand, given none
        return lines[0]
    m = USAGE_LINE.match(lines[0]) if lines else None
    if m is None or lines[0].startswith(PREFIX):
        return None
    rest = lines[1:]
    if rest == [f"Try 'veil{m['cmd']} --help'."] or any(x.startswith("usage: veil") for x in rest):
        return m["message"]
    return None


def refusal_problems(r: _Result, reason: Reason, *, exit_code: int = 1,
                     not_reason: Reason | None = None) -> list[str]:
    """What is wrong with r as a refusal for `reason` (empty when it is one). See the module docstring."""
    if not reason:
        raise ValueError("a refusal check must name its reason")
    problems = []
    code = _code(r)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        problems.append(f"killed by {name}")
    elif code != exit_code:
        problems.append(f"exit {code}, expected {exit_code}")
    message = usage_message(r) if exit_code == 2 else refusal_message(r)
    if message is None:
        shape = "a usage error" if exit_code == 2 else f"one '{PREFIX}' line"
        problems.append(f"stderr is not {shape}: {r.stderr[:600]!r}")
        return problems
    if not _matches(reason, message):
        problems.append(f"reason {_describe(reason)} not in {message!r}")
    elif exit_code != 2 and NOT_THE_CHECK.search(message) and not NOT_THE_CHECK.search(_describe(reason)):
        problems.append(f"refused before the check: {message!r}")
    if not_reason is not None and _matches(not_reason, message):
        problems.append(f"refused for {_describe(not_reason)}, which is not the reason: {message!r}")
    return problems


def assert_refused(r: _Result, reason: Reason, *, exit_code: int = 1, not_reason: Reason | None = None,
                   what: str = "") -> str:
    """Asserts r is a refusal for `reason`; returns the message (after `veil: error: `)."""
    problems = refusal_problems(r, reason, exit_code=exit_code, not_reason=not_reason)
    assert not problems, f"{what + ': ' if what else ''}not refused properly: {'; '.join(problems)}"
    message = usage_message(r) if exit_code == 2 else refusal_message(r)
    assert message is not None
    return message
