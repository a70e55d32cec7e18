-- One database per service, as deploy/local/postgres.sh creates them (PG_DATABASES in
-- deploy/local/env.sh). The postgres image runs this once, as POSTGRES_USER (who then owns the
-- databases), when it initialises an empty data volume; each service creates its own tables
-- (its embedded migrations) when it starts.
create database campaign;
create database tracking;
create database commission;
create database payment;
create database notification;
create database analytics;
create database webhook;
