"""``python -m crmkit_sqlalchemy upgrade URL``: create or migrate crmkit's schema; ``current URL``: show it.

``revision URL PACKAGE -m MESSAGE`` writes the next migration of a plugin package's aggregates.
"""

from __future__ import annotations

import argparse
import sys

from crmkit._errors import CRMError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crmkit_sqlalchemy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "upgrade",
        help="create the tables (those of installed plugins' aggregates too) or migrate them to the newest revision",
    )
    up.add_argument("url", help="sqlite:///crm.db or postgresql+psycopg://user:password@host/db")
    now = commands.add_parser("current", help="print the schema revision of the database")
    now.add_argument("url")
    rev = commands.add_parser(
        "revision", help="write the next migration of a plugin package's aggregates into <package>/crmkit_migrations"
    )
    rev.add_argument("url", help="a database at the package's latest revision")
    rev.add_argument("package", help="the top-level package that declares the aggregates")
    rev.add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)

    import crmkit_sqlalchemy

    try:
        if args.command == "upgrade":
            revision = crmkit_sqlalchemy.upgrade(args.url)
            print(f"crmkit schema is at revision {revision}")
        elif args.command == "revision":
            written = crmkit_sqlalchemy.revision(args.url, args.package, args.message)
            print(f"wrote revision {written} of {args.package}")
        else:
            found = crmkit_sqlalchemy.current(args.url)
            print(found if found is not None else "no crmkit schema")
    except CRMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
