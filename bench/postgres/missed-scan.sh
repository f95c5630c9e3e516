#!/usr/bin/env bash
# What the lead's scan for missed chats (`store/missed.rs`,
# `candidates_sql`) costs PostgreSQL when the planner has no statistics on
# `events` (autovacuum behind, or off): 200 open chats of --events events
# each (a visitor and an agent in turns, stored interleaved as a busy
# site's are) and 50 unanswered ones, all of the last hour, never
# analyzed. "before" is the schema to 0041 and the scan as it was;
# "after" is 0042 (the open chat's first reply on its row) and the scan
# that passes over such rows. Prints the execution time of each, in
# turns, from EXPLAIN ANALYZE.
#
#   bench/postgres/missed-scan.sh [--events N] [--rounds N]
#
# The scan's text is written out here as `candidates_sql` builds it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
events=3000
rounds=3
while [ $# -gt 0 ]; do
    case $1 in
    --events) events=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[[ $events =~ ^[1-9][0-9]*$ && $rounds =~ ^[1-9][0-9]*$ ]] || { echo "--events and --rounds take a positive count" >&2; exit 2; }
psql -d postgres -qAtc 'SELECT 1' >/dev/null || { echo "PostgreSQL is not reachable at $PGHOST" >&2; exit 1; }
trap 'for db in hf_ms_before hf_ms_after; do psql -d postgres -qc "DROP DATABASE IF EXISTS $db" 2>/dev/null; done' EXIT

seed() {
    local db=$1 last=$2
    psql -d postgres -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db" 2>/dev/null
    for f in migrations/postgres/*.sql; do
        [ "$(basename "$f" | cut -c1-4)" \> "$last" ] && continue
        psql -d "$db" -q -v ON_ERROR_STOP=1 -f "$f" >/dev/null
    done
    psql -d "$db" -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
INSERT INTO sites (id, name, widget_key, created_at) VALUES ('s1', 'Shop', 'k1', 0);
INSERT INTO groups (id, site_id, name, is_default, created_at) VALUES ('g1', 's1', 'General', true, 0);
INSERT INTO visitors (id, site_id, first_seen, last_seen) SELECT 'v' || i, 's1', 0, 0 FROM generate_series(1, 250) i;
INSERT INTO conversations (id, site_id, visitor_id, group_id, status, created_at)
    SELECT 'c' || i, 's1', 'v' || i, 'g1', CASE WHEN i <= 200 THEN 'active' ELSE 'queued' END,
           (extract(epoch FROM now()) * 1000)::bigint - 3600000 + i
    FROM generate_series(1, 250) i;
-- One statement a round of messages, as the writer's commits store them.
DO \$\$ DECLARE s int; BEGIN FOR s IN 1..$events LOOP
    INSERT INTO events (conversation_id, seq, id, kind, author_kind, author_id, client_id, body, data, created_at)
    SELECT 'c' || i, s, md5(random()::text), 'message', CASE WHEN s % 2 = 1 THEN 'visitor' ELSE 'agent' END,
           'a', 'k' || s, 'Is the blue one in stock? ' || s, '{}', (extract(epoch FROM now()) * 1000)::bigint
    FROM generate_series(1, CASE WHEN s <= 3 THEN 250 ELSE 200 END) i
    WHERE i <= 200 OR s % 2 = 1;
END LOOP; END \$\$;
SQL
}

scan() {
    local gate=$1
    local visitor_msg="FROM events e WHERE e.conversation_id = c.id AND e.kind = 'message' AND e.author_kind = 'visitor' ORDER BY e.seq LIMIT 1"
    local closed="FROM events e WHERE e.conversation_id = c.id AND e.kind = 'closed' AND e.author_kind = 'visitor' ORDER BY e.seq DESC LIMIT 1"
    echo "EXPLAIN (ANALYZE, SUMMARY) SELECT c.*, (SELECT e.created_at $visitor_msg) AS waiting_since, \
        (SELECT e.body $visitor_msg) AS first_visitor_body, (SELECT e.created_at $closed) AS closed_by_visitor_at \
        FROM conversations c WHERE c.created_at > (extract(epoch FROM now()) * 1000)::bigint - 10800000 \
        AND c.status IN ('queued', 'active', 'closed') \
        AND NOT EXISTS (SELECT 1 FROM missed_chats m WHERE m.conversation_id = c.id) $gate \
        AND NOT EXISTS (SELECT 1 FROM events e WHERE e.conversation_id = c.id AND e.kind = 'message' AND e.author_kind = 'agent') \
        AND (c.status <> 'closed' OR EXISTS (SELECT 1 $closed)) ORDER BY c.created_at LIMIT 500"
}

echo "bench postgres missed-scan: 200 answered chats of $events events, 50 unanswered, no statistics" >&2
seed hf_ms_before 0041
seed hf_ms_after 0042
candidates() { psql -d "$1" -qAtc "$(scan "$2" | sed 's/EXPLAIN (ANALYZE, SUMMARY) //') " | wc -l; }
echo "candidates before=$(candidates hf_ms_before '') after=$(candidates hf_ms_after 'AND c.first_agent_at IS NULL')"
# The scan's time on side $1's database, from EXPLAIN ANALYZE.
measure() {
    local gate=""
    [ "$1" = after ] && gate="AND c.first_agent_at IS NULL"
    psql -d "hf_ms_$1" -qAtc "$(scan "$gate")" | sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p'
}
. bench/postgres/turns.sh
in_turns "$rounds" scan_ms
echo "scenario=postgres-missed-scan events=$events rounds=$rounds median_scan_ms before=$TURNS_BEFORE after=$TURNS_AFTER ratio=$(turns_ratio 3)"
