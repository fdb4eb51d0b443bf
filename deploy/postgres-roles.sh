#!/bin/sh
# One PostgreSQL role per Hydra service, owning its own schema and nothing else: a service (or whoever
# holds its database URL) cannot read or change another service's tables.
# compose.yaml mounts this into the postgres image's /docker-entrypoint-initdb.d, which runs it once,
# when the data volume is first initialised, as $POSTGRES_USER. HYDRA_<SERVICE>_DB_PASSWORD set each
# role's password. Run by hand elsewhere: PGHOST=... POSTGRES_USER=... POSTGRES_DB=... sh postgres-roles.sh
set -eu

sql() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"
}

# Nobody connects or creates schemas unless granted; nothing goes into the shared "public" schema.
sql -v db="$POSTGRES_DB" <<'SQL'
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SQL

# service:schema (the public service's schema is "website")
for pair in gatekeeper:gatekeeper crm:crm tickets:tickets instances:instances public:website workflows:workflows; do
  service=${pair%%:*}
  schema=${pair#*:}
  variable="HYDRA_$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password=$(printenv "$variable" || true)
  if [ -z "$password" ]; then
    echo "postgres-roles.sh: $variable is not set" >&2
    exit 1
  fi
  sql -v db="$POSTGRES_DB" -v role="hydra_$service" -v schema="$schema" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE :"db" TO :"role";
CREATE SCHEMA :"schema" AUTHORIZATION :"role";
ALTER ROLE :"role" SET search_path = :"schema";
SQL
done
