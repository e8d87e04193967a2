"""Error types shared by every layer.

Users see these as one clear line (the CLI prints ``str(error)``), never as a traceback.
A configuration error says where it was found: file, line and the offending token.
"""

from __future__ import annotations


class IpsecLabError(Exception):
    """Base of every error ipseclab raises on purpose."""


class ConfigError(IpsecLabError):
    """A configuration file, scenario, proposal string or argument that cannot be used.

    ``file``, ``line`` and ``token`` locate the problem; any of them may be unknown.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        token: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.token = token
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        tok = f" (at '{self.token}')" if self.token is not None else ""
        return f"{where}{self.message}{tok}"


class UnknownAlgorithm(ConfigError):
    """An algorithm keyword nobody knows; the message suggests the nearest known ones."""


class AuthenticationFailed(IpsecLabError):
    """An ICV or AEAD tag did not verify."""


class InvalidKeyShare(IpsecLabError):
    """A peer's Diffie-Hellman public value failed the checks of RFC 6989."""
