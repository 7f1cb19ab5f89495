"""Expected failures and the one way entry points report them.

Every failure a user can act on (bad config, unreadable input, a missing model package, a step that
could not finish) derives from `UserError`; `entry` runs the CLI or a job and turns one into a single
line on stderr and an exit status (2 for config errors, 1 for the rest), with no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A failure the user acts on; the message says what failed and what to do."""

    exit_code = 1
    kind = "error"


class StepFailed(UserError):
    """A pipeline step stopped for a reason the user can act on."""


def entry(prog: str, main: Callable[[], int]) -> int:
    """`main()`'s exit status; a UserError (or a path the user named that does not exist) is printed as
    `prog: <kind>: <message>` and exits with its code."""
    try:
        return main()
    except UserError as e:
        print(f"{prog}: {e.kind}: {e}", file=sys.stderr)
        return e.exit_code
    except FileNotFoundError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
