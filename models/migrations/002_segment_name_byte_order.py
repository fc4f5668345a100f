"""Segment names sort by their bytes, whatever the database's default collation.

Under a linguistic collation (en_US.utf8, docker's postgres:16 default) SQL sorted
"-x", ".dot", "_z" differently from Python; with the column in "C", every ORDER BY of a
name agrees with Python's sorted() (names are ASCII, so bytes and code points agree).
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql('ALTER TABLE segments ALTER COLUMN name TYPE varchar(64) COLLATE "C"')


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql('ALTER TABLE segments ALTER COLUMN name TYPE varchar(64) COLLATE "default"')
