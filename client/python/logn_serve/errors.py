"""Exceptions carrying a gRPC status: every failed call raises a LognError subclass.

    try:
        client.get_version(99)
    except logn_serve.NotFound as e:
        print(e.code, e.message)   # StatusCode.NOT_FOUND, the server's own message

`e.code` is the grpc.StatusCode, `e.message` the server's status message (what gRPC calls
`details()`), `e.details` gRPC's debug string (peer, timestamps; for troubleshooting), `e.method`
the RPC's name. `str(e)` is "Method: CODE_NAME: message", as the `logn` CLI prints it.
"""
from typing import Dict, Optional, Type

import grpc


class LognError(Exception):
    """A LogN Serve call failed with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str, details: str = "",
                 method: str = "") -> None:
        self.code = code
        self.message = message
        self.details = details
        self.method = method
        super().__init__(str(self))

    @property
    def code_name(self) -> str:
        """The status code's canonical name, e.g. "INVALID_ARGUMENT"."""
        return self.code.name

    def __str__(self) -> str:
        prefix = f"{self.method}: " if self.method else ""
        return f"{prefix}{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(code={self.code.name}, message={self.message!r}, "
                f"method={self.method!r})")

    def __reduce__(self):  # picklable (multiprocessing data loaders)
        return (_rebuild, (self.code.name, self.message, self.details, self.method))


def _rebuild(code_name: str, message: str, details: str, method: str) -> "LognError":
    return error_for(grpc.StatusCode[code_name], message, details, method)


class Cancelled(LognError):
    pass


class Unknown(LognError):
    pass


class InvalidArgument(LognError, ValueError):
    """A bad request: image, options, setting, logits (the message names what and where)."""


class DeadlineExceeded(LognError):
    pass


class NotFound(LognError, LookupError):
    """Unknown statistics version, alias, job or model."""


class AlreadyExists(LognError):
    pass


class PermissionDenied(LognError):
    """A token was sent but it is not the server's."""


class ResourceExhausted(LognError):
    """Queue full, too many pixels or images, rows over the job limit, message too large."""


class FailedPrecondition(LognError):
    """The request is valid but the state is not: no statistics yet, an alias on the version,
    nothing to roll back to, a job that already committed."""


class Aborted(LognError):
    pass


class OutOfRange(LognError):
    pass


class Unimplemented(LognError):
    pass


class Internal(LognError):
    pass


class Unavailable(LognError):
    """The server cannot be reached (after the retries of an idempotent call) or is draining."""


class DataLoss(LognError):
    pass


class Unauthenticated(LognError):
    """The call needs the admin token (Client(token=...)) and none was sent."""


_BY_CODE: Dict[grpc.StatusCode, Type[LognError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def error_for(code: grpc.StatusCode, message: str, details: str = "",
              method: str = "") -> LognError:
    """The LognError subclass for `code`."""
    return _BY_CODE.get(code, LognError)(code, message, details, method)


def from_rpc_error(error: grpc.RpcError, method: str = "") -> LognError:
    """Converts what a gRPC stub raised (a grpc.Call) into a LognError."""
    code: Optional[grpc.StatusCode] = None
    message, details = str(error), ""
    if isinstance(error, grpc.Call):
        code = error.code()
        message = error.details() or ""
        debug = getattr(error, "debug_error_string", None)
        details = debug() if callable(debug) else ""
    return error_for(code or grpc.StatusCode.UNKNOWN, message, details, method)
