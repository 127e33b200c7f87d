"""How the fakes make a process die at an exact point."""


class ProcessDied(BaseException):
    """The process stopped right after a call took effect remotely (nothing after it ran,
    nothing of it was stored)."""
