"""The webhook feed's horizon skips transactions that promised not to write history
(models/events.py, ``promise_no_history``): the database refuses history from them, so
the promise cannot be broken by mistake and the feed cannot skip an event."""

SCHEMA = """
CREATE FUNCTION history_refuse_promised() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') = 'segments-no-history' THEN
        RAISE EXCEPTION 'this transaction promised not to write history';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER history_refuse_promised BEFORE INSERT ON history
    FOR EACH STATEMENT EXECUTE FUNCTION history_refuse_promised();
"""


def migrate(migrator, database, fake=False, **kwargs):
    migrator.sql(SCHEMA)


def rollback(migrator, database, fake=False, **kwargs):
    migrator.sql(
        "DROP TRIGGER history_refuse_promised ON history; DROP FUNCTION history_refuse_promised();"
    )
