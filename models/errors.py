"""Domain errors; the web tier maps each to an HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DomainError):
    @classmethod
    def user(cls, user_id: int) -> NotFound:
        return cls(f"user {user_id} not found", id=user_id)


class Conflict(DomainError):
    pass


class Invalid(DomainError):
    pass


class Gone(DomainError):
    """What was asked for existed once and was dropped on purpose (retention)."""
