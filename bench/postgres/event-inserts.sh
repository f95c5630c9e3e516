#!/usr/bin/env bash
# What storing a message costs PostgreSQL itself, as the group-commit
# writer (`store/postgres_writer.rs`) stores them: each commit locks 100
# open chats' rows, inserts one message into each and sets their
# `last_seq`. It runs the same load on the schema before a migration and
# after it (fresh databases from `migrations/postgres`, in turns), and
# prints the backend's CPU time and the wall time per message stored.
#
#   bench/postgres/event-inserts.sh [--after NNNN] [--rounds N] [--batches N]
#
# --after: the migration measured (default: the newest); "before" is every
# migration below it. Needs psql and a PostgreSQL on the same machine (the
# backend's CPU is read from /proc): PGHOST (127.0.0.1), PGUSER (postgres).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}

after=$(basename "$(ls migrations/postgres/*.sql | tail -1)" | cut -c1-4)
rounds=3
batches=300
while [ $# -gt 0 ]; do
    case $1 in
    --after) after=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --batches) batches=$2; shift 2 ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[[ $after =~ ^[0-9]{4}$ && $rounds =~ ^[1-9][0-9]*$ && $batches =~ ^[1-9][0-9]*$ ]] ||
    { echo "--after takes a migration's four digits; --rounds and --batches a positive count" >&2; exit 2; }
ls migrations/postgres/"$after"_*.sql >/dev/null 2>&1 || { echo "no migration $after in migrations/postgres" >&2; exit 2; }
psql -d postgres -qAtc 'SELECT 1' >/dev/null || { echo "PostgreSQL is not reachable at $PGHOST" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"; for db in hf_ev_before hf_ev_after hf_ev_run; do psql -d postgres -qc "DROP DATABASE IF EXISTS $db" 2>/dev/null; done' EXIT

# A template database for each schema: the migrations, a site, 500 open
# chats. Each round copies it, so every run starts from the same tables.
template() {
    local db=$1 last=$2
    psql -d postgres -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db" 2>/dev/null
    for f in migrations/postgres/*.sql; do
        [ "$(basename "$f" | cut -c1-4)" \< "$last" ] || [ "$(basename "$f" | cut -c1-4)" = "$last" ] || continue
        psql -d "$db" -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null
    done
    psql -d "$db" -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
INSERT INTO sites (id, name, widget_key, created_at) VALUES ('s1', 'Shop', 'k1', 0);
INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES ('g1', 's1', 'General', true, 0);
INSERT INTO visitors (id, site_id, first_seen, last_seen) SELECT 'v' || i, 's1', 0, 0 FROM generate_series(1, 500) i;
INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at)
    SELECT md5(i::text), 's1', 'v' || i, 'g1', 'active', 0 FROM generate_series(1, 500) i;
SQL
}
before_last=$(ls migrations/postgres/*.sql | xargs -n1 basename | cut -c1-4 | awk -v a="$after" '$1 < a' | tail -1)
[ -n "$before_last" ] || { echo "no migration comes before $after" >&2; exit 2; }
template hf_ev_before "$before_last"
template hf_ev_after "$after"

# One run: $batches commits of 100 messages, each commit to the next 100
# of the 500 chats (as the relay's batches spread over its conversations).
cat >"$work/run.sql" <<SQL
\pset tuples_only on
\pset format unaligned
SELECT pg_backend_pid() \g $work/pid
\! awk '{print \$14 + \$15}' /proc/\$(cat $work/pid)/stat > $work/cpu0
SELECT extract(epoch FROM clock_timestamp()) \g $work/t0
DO \$\$ DECLARE b int; BEGIN FOR b IN 1..$batches LOOP
    WITH c AS (SELECT id, visitor_id, last_seq FROM conversations ORDER BY id LIMIT 100 OFFSET (b % 5) * 100 FOR UPDATE)
    INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at)
    SELECT c.id, c.last_seq + 1, md5(random()::text), 'message', 'visitor', c.visitor_id, 'c' || b,
           'Hello, is the blue one in stock? Message ' || b || ' of the run', '{}', b FROM c;
    UPDATE conversations SET last_seq = last_seq + 1
    WHERE id IN (SELECT id FROM conversations ORDER BY id LIMIT 100 OFFSET (b % 5) * 100);
    COMMIT;
END LOOP; END \$\$;
SELECT extract(epoch FROM clock_timestamp()) \g $work/t1
\! awk '{print \$14 + \$15}' /proc/\$(cat $work/pid)/stat > $work/cpu1
SQL

# One run on a copy of side $1's template: its CPU and wall time a message.
measure() {
    psql -d postgres -qc "DROP DATABASE IF EXISTS hf_ev_run" -qc "CREATE DATABASE hf_ev_run TEMPLATE hf_ev_$1" 2>/dev/null
    psql -d hf_ev_run -q -v ON_ERROR_STOP=1 -f "$work/run.sql" >/dev/null
    local rows=$((batches * 100))
    # CPU in clock ticks (1/100 s), wall in seconds: µs a message.
    awk -v c0="$(cat "$work/cpu0")" -v c1="$(cat "$work/cpu1")" -v t0="$(cat "$work/t0")" -v t1="$(cat "$work/t1")" \
        -v n="$rows" 'BEGIN { printf "%.1f wall_us_per_msg=%.1f\n", (c1 - c0) * 1e4 / n, (t1 - t0) * 1e6 / n }'
}

echo "bench postgres event-inserts: before (to $before_last) and after ($after), $rounds rounds of $batches commits of 100" >&2
. bench/postgres/turns.sh
in_turns "$rounds" backend_cpu_us_per_msg
echo "scenario=postgres-event-inserts after=$after rounds=$rounds median_backend_cpu_us_per_msg before=$TURNS_BEFORE after=$TURNS_AFTER ratio=$(turns_ratio 2)"
