"""The error hierarchy. The class decides the reaction, not the message."""


class StairwayError(Exception):
    """Base class for every error Stairway raises on purpose."""


class ConfigError(StairwayError):
    """A configuration file or override is invalid. The message names file, key and value."""


class DataError(StairwayError):
    """A data file is invalid. The message names the file, the row and the problem."""


class CheckpointError(StairwayError):
    """A checkpoint is unreadable, corrupt or does not match what the caller needs."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint was trained for another feature spec, observation shape or action space."""


class BadPayload(StairwayError):
    """A broker payload that does not parse; the message names the field and the value."""


class TransientError(StairwayError):
    """Retry with jittered backoff (timeouts, disconnects, 5xx)."""


class OrderRejected(StairwayError):
    """The broker refused an order. Do not retry it."""


class FatalError(StairwayError):
    """Flatten or stop, and alert."""


class InvariantViolation(StairwayError):
    """Internal state is impossible. Crash; start-up reconciliation repairs (crash-only)."""


# The transient-error family: what every retry site retries (a broker's 5xx or timeout, a
# malformed reply, a dropped connection); anything else is not retried.
TRANSIENT: tuple[type[BaseException], ...] = (TransientError, BadPayload, OSError, TimeoutError)
