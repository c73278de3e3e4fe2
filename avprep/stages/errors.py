"""The one exception a stage raises for a clip it cannot use: a short reason (counted) and a detail (logged)."""

import errno

# OSError numbers of storage that may work on a second try (NFS or Lustre hiccups, a dropped mount, I/O timeouts):
# a clip that fails with one is rejected as "I/O error", a transient reason that a resume retries.
TRANSIENT_ERRNOS = frozenset(getattr(errno, n) for n in ("EIO", "ESTALE", "ETIMEDOUT", "EAGAIN", "EBUSY", "ENOLINK",
                                                         "ECONNRESET", "EREMOTEIO", "ENOMEM") if hasattr(errno, n))


def io_error(e: BaseException) -> "ClipError | None":
    """An "I/O error" rejection for an OSError whose errno says the storage failed (may pass), else None."""
    if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
        return ClipError("I/O error", f"{type(e).__name__}: {e}".splitlines()[0][:200])
    return None


class ClipError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
