"""The one exception a stage raises for a clip it cannot use: a short reason (counted) and a detail (logged)."""


class ClipError(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
