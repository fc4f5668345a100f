"""Apply pending migrations: ``python -m models.infra.migrate`` (the Procfile's release step)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from peewee_migrate import Router

from models.infra.db import db, init_db
from models.infra.settings import ConfigError, load_settings

MIGRATIONS_DIR = Path(__file__).parent.parent / "migrations"  # models/migrations
# Any constant works; it only has to be the same for every release process.
MIGRATION_LOCK = 7_301_985_551


def apply_migrations() -> list[str]:
    with db.connection_context():
        # Two release processes at once (a scaled deploy) must not both run a migration.
        db.execute_sql("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            return Router(db, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"]).run()
        finally:
            db.execute_sql("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        init_db(load_settings())
        applied = apply_migrations()
    except ConfigError as exc:
        sys.exit(f"configuration error: {exc}")
    except Exception as exc:  # noqa: BLE001 - one clear line for an operator
        sys.exit(f"migration failed: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
    print(f"migrations applied: {', '.join(applied) or 'none pending'}")


if __name__ == "__main__":
    main()
