"""Checks the addresses a citizen gives for notifications; pure, no I/O.

An address ends up in a mail header (``To:``) or a webhook body, so anything that could
change a message's structure is refused, not cleaned: line breaks (header injection), other
control or invisible characters, display names, comments, quoted or multiple addresses. E-mail
addresses are the RFC 5321 "dot-atom" form only (``local@domain``, ASCII, a local part of at
most 64 and an address of at most 254 characters, a domain of at least two DNS labels); an
app handle is what the national app shows its user (letters, digits, ``. _ : -``).
"""

from __future__ import annotations

import re

from cdx import errors
from notify.model import Channel

MAX_EMAIL = 254
MAX_LOCAL = 64
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HANDLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def check_email(text: str) -> str:
    """The address, its domain in lower case.

    Raises:
        InvalidAddressError: not a plain ``local@domain`` address (see the module docstring).
    """
    if not isinstance(text, str) or not text:
        raise errors.InvalidAddressError("an e-mail address is required")
    if len(text) > MAX_EMAIL:
        raise errors.InvalidAddressError(f"an e-mail address has at most {MAX_EMAIL} characters")
    if any(not (0x20 < ord(c) < 0x7F) for c in text):
        # CR, LF and other controls (header injection), spaces, non-ASCII look-alikes
        raise errors.InvalidAddressError("an e-mail address holds plain ASCII characters only")
    local, at, domain = text.rpartition("@")
    if not at or not local or "@" in local:
        raise errors.InvalidAddressError("an e-mail address is local@domain")
    if len(local) > MAX_LOCAL or not _LOCAL.fullmatch(local):
        raise errors.InvalidAddressError("the part before @ is not a plain mailbox name")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise errors.InvalidAddressError("the part after @ is not a domain name")
    return f"{local}@{domain.lower()}"


def check_app_handle(text: str) -> str:
    """The handle as given.

    Raises:
        InvalidAddressError: not 1..128 of letters, digits, ``. _ : -`` (starting with one of
            the first two).
    """
    if not isinstance(text, str) or not _HANDLE.fullmatch(text):
        raise errors.InvalidAddressError(
            "an app handle is 1 to 128 letters, digits, '.', '_', ':' or '-'"
        )
    return text


def check_address(channel: Channel, text: str) -> str:
    """``check_email`` or ``check_app_handle`` by channel."""
    return check_email(text) if channel is Channel.EMAIL else check_app_handle(text)
