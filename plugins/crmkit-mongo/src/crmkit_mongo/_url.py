"""Reading a MongoDB URL without contacting any server: database, hosts, password to hide."""

from __future__ import annotations

import re
from urllib.parse import unquote

import attrs

from crmkit._errors import ValidationError

__all__ = ["DEFAULT_DATABASE", "SCHEMES", "MongoURL", "parse_url"]

SCHEMES = ("mongodb", "mongodb+srv")
DEFAULT_DATABASE = "crmkit"
# MongoDB refuses these in database names (on any platform); the length limit is the server's.
_BAD_DATABASE = re.compile(r'[/\\. "$*<>:|?\x00]')


@attrs.frozen
class MongoURL:
    """What crmkit needs from a MongoDB URL; the driver parses the full URL itself."""

    url: str
    scheme: str
    hosts: str
    database: str
    password: str | None

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by ``***``."""
        if not self.password:
            return self.url
        head, sep, rest = self.url.partition("://")
        userinfo, at, tail = rest.partition("@")
        user = userinfo.split(":", 1)[0]
        return f"{head}{sep}{user}:***{at}{tail}"

    def scrub(self, text: str) -> str:
        """``text`` with the password (raw or percent-encoded) removed, for error messages."""
        if self.password:
            raw = self.url.partition("://")[2].rpartition("@")[0].partition(":")[2]
            for secret in {self.password, raw}:
                if secret:
                    text = text.replace(secret, "***")
        return text


def parse_url(url: str) -> MongoURL | None:
    """Split a ``mongodb://`` or ``mongodb+srv://`` URL; None for other schemes.

    ``mongodb://[user[:password]@]host[:port][,host...][/database][?options]``. The
    database comes from the path (``crmkit`` when empty); credentials and options are left
    to the driver. Raises ValidationError for a URL that names no host or a bad database.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        return None
    authority, _, path = rest.partition("/")
    if "?" in authority:  # "mongodb://host?opts" without the slash
        authority, _, query = authority.partition("?")
        path = "?" + query
    userinfo, at, hostlist = authority.rpartition("@")
    if not at:
        userinfo, hostlist = "", authority
    password: str | None = None
    if ":" in userinfo:
        password = unquote(userinfo.split(":", 1)[1])
    if not hostlist:
        raise ValidationError("url", "names no MongoDB host (mongodb://host[:port]/database)", _hide(url, userinfo))
    database = unquote(path.partition("?")[0]) or DEFAULT_DATABASE
    if _BAD_DATABASE.search(database) or len(database.encode()) > 63:
        raise ValidationError(
            "url", "database name must be 1-63 bytes without / \\ . space \" $ * < > : | ?", database
        )
    return MongoURL(url=url, scheme=scheme, hosts=hostlist, database=database, password=password)


def _hide(url: str, userinfo: str) -> str:
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return url.replace(userinfo + "@", f"{user}:***@", 1)
