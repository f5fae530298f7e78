-- Creates one database per Kefu service. Each service owns its schema and
-- runs its own Alembic migrations; no service reads another's database.
--
-- The postgres image runs files in /docker-entrypoint-initdb.d only when the
-- data directory is empty (first start of the volume), as POSTGRES_USER.
-- After changing this file, recreate the volume: docker compose down -v
CREATE DATABASE kefu_intake;
CREATE DATABASE kefu_tickets;
CREATE DATABASE kefu_briefs;
CREATE DATABASE kefu_analytics;
