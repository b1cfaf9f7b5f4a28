"""Shared alembic environment: one history is applied to many databases in a loop, so the
connection is handed in by the caller (``config.attributes["connection"]``) rather than
built from a URL here. Offline mode (``--sql``) renders the SQL for a dialect instead.

The schema is handed in the same way (``config.attributes["target_metadata"]``): it belongs to
the shards package, which applies these histories, so importing it here would make the two
packages import each other."""

from __future__ import annotations

from alembic import context


def run() -> None:
    config = context.config
    target_metadata = config.attributes["target_metadata"]
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=target_metadata,
            literal_binds=True,
            transaction_per_migration=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
