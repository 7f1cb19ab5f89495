"""The base of the errors a user acts on: the jobs and the CLI print the message and exit 1."""


class StepFailed(RuntimeError):
    """A step stopped for a reason the user can act on; the message says what and what to do."""
