"""The memory: the SQLite database (schema, migrations, transactions), backups, and whether `tinybot run` is alive."""
