"""One exception family for failures a user should read as a sentence, not a traceback.

`main.py` turns any `OrchError` into a single line on stderr and exits with its `exit_code`;
everything else is a bug and shows a traceback only with `--verbose`.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1        # the run failed or finished partially
EXIT_USAGE = 2         # bad flags, bad input, bad config
EXIT_INTERRUPTED = 130  # Ctrl-C: state saved, resumable


class OrchError(Exception):
    """A failure the user can act on; its message is one clear line."""

    exit_code = EXIT_FAILED


class UsageError(OrchError):
    """Bad flags, files, config or other input: nothing was sent to a model."""

    exit_code = EXIT_USAGE


class LLMError(OrchError):
    """A model call failed after its retries, or its output could not be validated."""


class ModelChoiceError(LLMError, UsageError):
    """No model given and the server serves several or none: the user must name one (exit 2). Still
    an `LLMError`, so a caller that handles failed model calls handles this one too."""


class PlanError(OrchError):
    """The orchestrator could not produce a valid plan, even after one repair round-trip."""


class BudgetExceeded(OrchError):
    """The next model call would exceed `--max-tokens-total`; state is saved for `--resume`."""


class ToolError(OrchError):
    """A deterministic tool worker could not run on its input (bad CSV, missing column...)."""


class StorageError(OrchError):
    """The run folder cannot be written (full disk, folder removed): the run stops at once, since
    work that cannot be saved would be paid for again."""
