"""The local ClickHouse endpoint's credentials: one writer and one reader per stack folder.

Generated at the first `aipulse up` of a state folder (``secrets``), kept in
``<home>/clickhouse/credentials.json`` readable by its owner only (0600), and reused on every
restart so running workers keep their URL (delete the file while the stack is down to rotate
them). The endpoint reads the file at start-up; clients get a URL that carries the user::

    >>> creds = ensure_credentials(Path(".aipulse") / "clickhouse" / "credentials.json")  # doctest: +SKIP
    >>> creds.url("127.0.0.1:8123")                     # doctest: +SKIP
    'http://aipulse:...@127.0.0.1:8123'
    >>> creds.url("127.0.0.1:8123", role="reader")      # doctest: +SKIP
    'http://aipulse_reader:...@127.0.0.1:8123'
"""
from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

WRITER_USER = "aipulse"
READER_USER = "aipulse_reader"
PASSWORD_BYTES = 24  # 192 bits of secrets.token_urlsafe: no guessing over HTTP
FILE_NAME = "credentials.json"


class CredentialsError(RuntimeError):
    """The credentials file is missing, unreadable or readable by others; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    writer_user: str
    writer_password: str
    reader_user: str
    reader_password: str

    def users(self) -> dict[str, tuple[str, str]]:
        """user name -> (password, role); role is "writer" or "reader"."""
        return {self.writer_user: (self.writer_password, "writer"),
                self.reader_user: (self.reader_password, "reader")}

    def url(self, address: str, role: str = "writer") -> str:
        user, password = ((self.writer_user, self.writer_password) if role == "writer"
                          else (self.reader_user, self.reader_password))
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@{address}"


def credentials_path(home: Path) -> Path:
    return Path(home) / "clickhouse" / FILE_NAME


def generate() -> Credentials:
    return Credentials(WRITER_USER, secrets.token_urlsafe(PASSWORD_BYTES),
                       READER_USER, secrets.token_urlsafe(PASSWORD_BYTES))


def load_credentials(path: Path) -> Credentials:
    path = Path(path)
    try:
        mode = path.stat().st_mode
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CredentialsError(f"no endpoint credentials at {path}: start the stack with `aipulse up`") from None
    except (OSError, ValueError) as err:
        raise CredentialsError(f"cannot read endpoint credentials {path}: {err} (delete it and run `aipulse up`)") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(f"endpoint credentials {path} are readable by others: run `chmod 600 {path}`")
    try:
        return Credentials(raw["writer"]["user"], raw["writer"]["password"],
                           raw["reader"]["user"], raw["reader"]["password"])
    except (KeyError, TypeError):
        raise CredentialsError(f"endpoint credentials {path} are incomplete (delete it and run `aipulse up`)") from None


def ensure_credentials(path: Path) -> Credentials:
    """The stack's credentials, generated on first use (file created 0600, never wider)."""
    path = Path(path)
    if path.exists():
        return load_credentials(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    creds = generate()
    body = json.dumps({"writer": {"user": creds.writer_user, "password": creds.writer_password},
                       "reader": {"user": creds.reader_user, "password": creds.reader_password}}, indent=2)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    # O_EXCL + 0600 at creation: the secret is never on disk with wider permissions.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)
    return creds


def local_url(home: Path, address: str, role: str = "writer") -> str:
    """The URL (with its user) of the local endpoint at `address` of the stack in `home`."""
    return load_credentials(credentials_path(home)).url(address, role)
