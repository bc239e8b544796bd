-- A WebSocket connection ends when the token it was opened with expires (issue 16): the expiry
-- is kept with the connection and checked on every message and push.
ALTER TABLE connections ADD COLUMN expires_at timestamptz;

-- The functions' role (issue 16, least privilege): reads and writes the tables, cannot change
-- the schema. Migrations run as the administrator in the deploy step; the login the functions
-- use (made by that step, with its own secret) is a member of `collab_app`. The role is
-- cluster-wide, so several databases on one server (the tests) share it; creating it races
-- when they migrate at once, hence the exception handler.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'collab_app') THEN
        CREATE ROLE collab_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO collab_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO collab_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO collab_app;
-- Tables and sequences later migrations create get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO collab_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO collab_app;
-- The migration history is read (the functions' schema-version check), never written.
REVOKE INSERT, UPDATE, DELETE ON refinery_schema_history FROM collab_app;
