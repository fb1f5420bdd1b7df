"""Passwords, CSRF tokens and the login rate limit of the annotation app.

Passwords are stored as argon2id hashes (argon2-cffi's defaults, RFC 9106). The session itself is a signed
cookie (Starlette's SessionMiddleware, itsdangerous); the CSRF token lives in it and every form echoes it back
(the synchroniser-token pattern, OWASP CSRF cheat sheet).
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
MIN_PASSWORD = 8
# A hash to verify against when the username is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("not-a-password-anyone-has")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"passwords need at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def check_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: str | None, given: str | None) -> bool:
    """Constant-time comparison, so timing does not leak how much of a token was right."""
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given)


class LoginLimiter:
    """At most `attempts` failed logins per (client address, username) in a sliding window of `window` s.

    In memory, per server process: run one process (the default) or put a shared limiter in front.
    """

    def __init__(self, attempts: int = 5, window: float = 300.0):
        self.attempts, self.window = attempts, window
        self._failures: dict[tuple[str, str], deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked_for(self, client: str, username: str) -> float:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        with self._lock:
            failures = self._recent(client, username)
            if len(failures) < self.attempts:
                return 0.0
            return max(0.0, failures[0] + self.window - time.monotonic())

    def failed(self, client: str, username: str) -> None:
        with self._lock:
            self._recent(client, username).append(time.monotonic())

    def succeeded(self, client: str, username: str) -> None:
        with self._lock:
            self._failures.pop((client, username.lower()), None)

    def _recent(self, client: str, username: str) -> deque:
        failures = self._failures[(client, username.lower())]
        while failures and failures[0] < time.monotonic() - self.window:
            failures.popleft()
        return failures
