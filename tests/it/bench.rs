//! `holdfast bench` at small scale, run as a user would. Figures are
//! printed, and asserted only to be positive and to add up (a noisy 2-core
//! machine); the lost and doubled counts exactly.

use std::collections::HashMap;
use std::process::Command;

fn bench(args: &[&str]) -> HashMap<String, String> {
    bench_printing(args).0
}

/// The final line's figures, and everything printed on stdout.
fn bench_printing(args: &[&str]) -> (HashMap<String, String>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast")).arg("bench").args(args).output().expect("run bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "bench {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().expect("a final line");
    println!("{last}");
    let figures = last
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    (figures, stdout)
}

fn number(r: &HashMap<String, String>, key: &str) -> f64 {
    r[key].parse().unwrap_or_else(|_| panic!("{key}: {r:?}"))
}

/// The soak at CI scale: a minute, a row per 20 s, nothing lost or
/// doubled, no storage error or slow pool in the server's log, and every
/// status check the server ran recorded in the status page's store.
#[test]
fn a_soak_prints_a_row_per_interval_and_loses_nothing() {
    let (r, stdout) = bench_printing(&["soak", "--pairs", "4", "--seconds", "60", "--interval-s", "20"]);
    println!("{stdout}");
    let rows: Vec<&str> =
        stdout.lines().filter(|l| l.split_whitespace().next().is_some_and(|n| n.parse::<u32>().is_ok())).collect();
    assert_eq!(rows.len(), 3, "a row per interval:\n{stdout}");
    assert_eq!(r["intervals"], "3", "{r:?}");
    assert!(number(&r, "messages") > 0.0 && number(&r, "last_msgs_per_s") > 0.0, "{r:?}");
    for zero in ["lost", "duplicated", "storage_errors", "slow_acquires"] {
        assert_eq!(r[zero], "0", "{zero}: {r:?}");
    }
    assert!(number(&r, "status_checks") > 0.0, "{r:?}");
    assert!(number(&r, "status_recorded") >= number(&r, "status_checks"), "a check went unrecorded: {r:?}");
}

/// A restart, then the first send into a conversation longer than the
/// idempotency window: acknowledged (its time is printed, not asserted),
/// a retry within the window is recognised, one beyond it is new, and a
/// retry after `kill -9` finds the original.
#[test]
fn the_first_send_after_a_restart_and_retries_on_both_sides_of_the_window() {
    let r = bench(&["first-send", "--messages", "1500"]);
    assert!(number(&r, "first_send_ms") > 0.0, "{r:?}");
    assert_eq!(r["retry_in_window"], "duplicate", "{r:?}");
    assert_eq!(r["retry_outside_window"], "new", "{r:?}");
    assert_eq!(r["retry_after_kill9"], "duplicate", "{r:?}");
    assert_eq!(r["storage_errors"], "0", "{r:?}");
}

/// A figure of the final line, as a number.
fn figure(r: &HashMap<String, String>, key: &str) -> f64 {
    r[key].parse().unwrap_or_else(|e| panic!("{key}: {e} in {r:?}"))
}

#[test]
fn relay_moves_messages_both_ways_with_nothing_lost_or_doubled() {
    let r = bench(&["relay", "--pairs", "20", "--seconds", "3"]);
    assert_eq!(r["scenario"], "relay");
    assert!(r["msgs_per_s"].parse::<f64>().unwrap() > 0.0, "{r:?}");
    for figure in ["server_cpu_us_per_msg", "client_cpu_us_per_msg"] {
        assert!(r[figure].parse::<f64>().is_ok_and(|us| us > 0.0), "{figure}: {r:?}");
    }
    assert_eq!(r["lost"], "0", "{r:?}");
    assert_eq!(r["duplicated"], "0", "{r:?}");
    let r = bench(&["relay", "--pairs", "10", "--seconds", "3", "--rate", "100"]);
    assert_eq!(r["rate"], "100");
    assert_eq!(r["lost"], "0", "{r:?}");
    assert_eq!(r["duplicated"], "0", "{r:?}");
}

/// Files stream to disk: 50 uploads of 10 MiB at once (500 MiB in flight)
/// raise the server's RSS by at most 50 MB.
#[test]
fn fifty_uploads_of_ten_mib_at_once_cost_the_server_little_memory() {
    let r = bench(&["uploads", "--uploads", "50", "--mb", "10"]);
    assert_eq!((r["scenario"].as_str(), r["failed"].as_str()), ("uploads", "0"), "{r:?}");
    let growth = figure(&r, "rss_growth_mb");
    assert!(figure(&r, "server_rss_peak_mb") > 0.0 && growth <= 50.0, "{r:?}");
}

#[test]
fn idle_sockets_and_startup_are_measured() {
    let r = bench(&["idle", "--sockets", "200"]);
    assert_eq!(r["sockets"], "200");
    // What a socket costs is the server's RSS growth over the sockets
    // (within rounding of the two figures). At 200 sockets that growth is
    // within the allocator's noise, and can be negative: its sign is not
    // asserted, its sum is.
    let (idle_mb, with_sockets_mb) = (figure(&r, "server_rss_idle_mb"), figure(&r, "server_rss_mb"));
    let per_socket_kib = (with_sockets_mb - idle_mb) * 1024.0 / 200.0;
    assert!((figure(&r, "rss_per_socket_kib") - per_socket_kib).abs() <= 1.0, "{r:?}");
    assert!(idle_mb > 0.0 && with_sockets_mb > 0.0, "{r:?}");
    assert!(figure(&r, "connect_per_s") > 0.0, "{r:?}");
    let r = bench(&["startup", "--runs", "2"]);
    assert!(r["ready_p50_ms"].parse::<f64>().unwrap() > 0.0, "{r:?}");
}

#[test]
fn relay_on_one_node_and_on_two_is_measured_in_one_run() {
    let (db, nats) = (crate::services::postgres_url(), crate::services::nats_url());
    // Each node held to a core of its own (a cgroup's quota), as a user
    // measuring what a second machine buys would run it.
    let r = bench(&[
        "relay-cluster",
        "--pairs",
        "10",
        "--seconds",
        "2",
        "--node-cpus",
        "1",
        "--database-url",
        &db,
        "--nats-url",
        &nats,
    ]);
    assert_eq!(r["scenario"], "relay-cluster");
    assert_eq!(r["node_cpus"], "1.00");
    assert!(r["one_node_msgs_per_s"].parse::<f64>().unwrap() > 0.0, "{r:?}");
    assert!(r["two_nodes_msgs_per_s"].parse::<f64>().unwrap() > 0.0, "{r:?}");
    // The ratio is two nodes' rate over one node's, within the rounding of
    // the printed rates (to whole messages) and ratio (to hundredths).
    let (one, two) = (figure(&r, "one_node_msgs_per_s"), figure(&r, "two_nodes_msgs_per_s"));
    let ratio = two / one.max(1.0);
    assert!((figure(&r, "ratio") - ratio).abs() <= 0.01 + ratio * (1.0 / one + 1.0 / two), "{r:?}");
    // pgbench ran against the same server, and the half-rate phase moved
    // messages at about the rate it was given.
    let pgbench = figure(&r, "pgbench_tps");
    assert!(pgbench > 0.0, "{r:?}");
    assert!((figure(&r, "one_node_vs_pgbench") - one / pgbench).abs() <= 0.01 + one / pgbench / 100.0, "{r:?}");
    assert!(figure(&r, "half_rate_msgs_per_s") > 0.0 && figure(&r, "half_rate_p99_ms") > 0.0, "{r:?}");
    assert!(figure(&r, "half_rate_msgs_per_s") <= two * 0.5 * 1.5 + 1.0, "{r:?}");
    // What each phase cost: the machine was busy with it, and its CPU per
    // message covers at least the servers' own.
    for n in ["one_node", "two_nodes"] {
        let busy = figure(&r, &format!("{n}_machine_busy_pct"));
        assert!(busy > 0.0 && busy <= 100.0, "{r:?}");
        let (machine, server) =
            (figure(&r, &format!("{n}_machine_cpu_us_per_msg")), figure(&r, &format!("{n}_server_cpu_us_per_msg")));
        assert!(server > 0.0 && machine >= server * 0.9, "{r:?}");
        // PostgreSQL's processes, read beside the servers': they stored
        // every message, and the parts do not add up to more than the whole.
        let database = figure(&r, &format!("{n}_database_cpu_us_per_msg"));
        assert!(database > 0.0 && server + database <= machine * 1.25, "{r:?}");
    }
    // Events crossed between the two nodes, timed by the receiving one;
    // ten pairs leave NATS nearly idle, so few if any took a second.
    assert!(figure(&r, "two_nodes_bus_delay_mean_ms") >= 0.0, "{r:?}");
    assert!(figure(&r, "two_nodes_bus_delay_over_1s_pct") < 50.0, "{r:?}");
    // Each NATS message the nodes sent reached the other whole, a batch
    // with each of its events (fewer received would be messages lost; the
    // nodes' counters are read one after the other, so a heartbeat or two
    // may be on its way).
    assert!(figure(&r, "two_nodes_bus_events_per_message") >= 0.99, "{r:?}");
    // Every message went through a node's group commit, one or more a commit.
    assert!(figure(&r, "one_node_commit_batch_mean") >= 1.0, "{r:?}");
    assert!(figure(&r, "two_nodes_commit_batch_mean") >= 1.0, "{r:?}");
    assert_eq!(r["lost"], "0", "{r:?}");
    assert_eq!(r["duplicated"], "0", "{r:?}");
}

/// `bench reports` at CI size, on SQLite and on PostgreSQL: every event
/// of the history is written, each window's report answers (an admin's
/// with chats in it, and an agent's), and the relay's p99 is measured
/// in turns without and with reports asked in a loop. The figures are printed, not
/// held to the targets (those belong to the full-size benchmark).
#[test]
fn reports_on_a_seeded_history_are_timed_beside_live_chat_on_both_stores() {
    let db = crate::services::postgres_url();
    // On PostgreSQL the summaries of settled days are emptied before the
    // relay (`--cold`) and the lead makes them again beside it, resting
    // between days: 40 days take seconds on a loaded machine. The relay is
    // long enough for turns after.
    let cold = ["--database-url", db.as_str(), "--cold", "--days", "40", "--seconds", "20"];
    for (store, extra) in [("sqlite", vec!["--seconds", "4"]), ("postgres", cold.to_vec())] {
        let mut args = vec!["reports", "--conversations", "2000", "--events", "20000", "--windows", "2"];
        args.extend(["--repeats", "2", "--pairs", "2", "--rate", "20", "--turn-ms", "1000"]);
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("dump.csv");
        args.extend(["--dump", dump.to_str().unwrap()]);
        args.extend(extra);
        let r = bench(&args);
        // The dump holds every message counted and every report asked.
        let csv = std::fs::read_to_string(&dump).unwrap();
        let count = |what: &str| csv.lines().filter(|l| l.starts_with(&format!("{what},"))).count() as f64;
        let backfill = figure(&r, "messages_during_backfill");
        let counted = figure(&r, "messages_quiet") + figure(&r, "messages_during_reports") + backfill;
        assert_eq!(count("message"), counted, "{csv}");
        assert_eq!(count("report"), figure(&r, "reports_during_relay"), "{csv}");
        assert_eq!((r["scenario"].as_str(), r["store"].as_str()), ("reports", store), "{r:?}");
        // Turns of a second, without reports and with them in turn:
        // messages on each side. (A turn with reports lasts until its last
        // report is answered, up to 3.3 s on a loaded machine, and the
        // quiet turn after it starts from there: the sides are not equal,
        // but neither is eaten by the other.) The backfill's messages are
        // counted apart.
        assert_eq!(r["turn_ms"], "1000", "{r:?}");
        let (quiet, busy) = (figure(&r, "messages_quiet"), figure(&r, "messages_during_reports"));
        assert!(quiet >= (quiet + busy) / 6.0 && busy >= (quiet + busy) / 6.0, "{r:?}");
        assert_eq!((r["conversations"].as_str(), r["events"].as_str()), ("2000", "20000"), "{r:?}");
        assert_eq!(r["windows"], "2", "{r:?}");
        assert!(figure(&r, "seed_s") > 0.0 && figure(&r, "chats_per_window") > 0.0, "{r:?}");
        for who in ["admin", "agent"] {
            let (median, max) =
                (figure(&r, &format!("{who}_report_median_ms")), figure(&r, &format!("{who}_report_max_ms")));
            assert!(median > 0.0 && max >= median, "{who}: {r:?}");
        }
        let (quiet, busy) = (figure(&r, "p99_quiet_ms"), figure(&r, "p99_during_reports_ms"));
        assert!(quiet > 0.0 && busy > 0.0, "{r:?}");
        // The ratio is of the printed p99s, within their rounding.
        let ratio = busy / quiet;
        assert!((figure(&r, "p99_ratio") - ratio).abs() <= 0.01 + (1.0 + ratio) * 0.01 / quiet, "{r:?}");
        assert!(figure(&r, "reports_during_relay") > 0.0, "{r:?}");
        // On PostgreSQL the lead summarized every settled day before the
        // reports were timed, and again after they were emptied, with the
        // relay running; SQLite keeps none.
        if store == "postgres" {
            assert!(figure(&r, "summaries_made_s") > 0.0 && figure(&r, "backfill_s") > 0.0, "{r:?}");
            assert!(backfill > 0.0 && figure(&r, "p99_during_backfill_ms") > 0.0, "{r:?}");
            // The history's 40 days, and the days since it ended but one.
            assert!(figure(&r, "summaries_held_after") >= 40.0, "{r:?}");
        } else {
            assert_eq!((r["summaries_made_s"].as_str(), r["backfill_s"].as_str()), ("n/a", "n/a"), "{r:?}");
            assert_eq!((backfill, figure(&r, "summaries_held_after")), (0.0, 0.0), "{r:?}");
        }
        let backfill_reports = figure(&r, "reports_during_backfill");
        assert_eq!(figure(&r, "report_during_backfill_max_ms") > 0.0, backfill_reports > 0.0, "{r:?}");
        for zero in ["lost", "duplicated", "storage_errors"] {
            assert_eq!(r[zero], "0", "{zero}: {r:?}");
        }
        // A fresh history has no open chat; the relay's two are closed at
        // its end, so a run reusing the history does not get them back.
        assert_eq!((r["open_chats_found"].as_str(), r["chats_closed_after"].as_str()), ("0", "2"), "{r:?}");
    }
}

/// `bench retention` at CI size, on SQLite and on PostgreSQL: the policy,
/// turned on and off in turns of the relay, erases chats of the history
/// (each with all its messages) while on, and the relay loses and
/// doubles nothing.
#[test]
fn retention_erases_a_seeded_history_beside_live_chat_on_both_stores() {
    let db = crate::services::postgres_url();
    for (store, extra) in [("sqlite", vec![]), ("postgres", vec!["--database-url", db.as_str()])] {
        // A history the job cannot finish within its turns (PostgreSQL
        // erases some 500 chats a second here).
        let mut args = vec!["retention", "--conversations", "20000", "--messages", "2"];
        args.extend(["--pairs", "2", "--seconds", "4", "--rate", "20", "--turn-ms", "2000"]);
        args.extend(extra);
        let r = bench(&args);
        assert_eq!((r["scenario"].as_str(), r["store"].as_str()), ("retention", store), "{r:?}");
        assert_eq!(r["turn_ms"], "2000", "{r:?}");
        let erased = figure(&r, "erased_conversations");
        assert!((1.0..20000.0).contains(&erased), "{r:?}");
        assert_eq!(figure(&r, "erased_messages"), 2.0 * erased, "every message of each: {r:?}");
        // Two turns with the policy in 8 s, each lasting at least its 2 s.
        assert!(figure(&r, "erasing_s") >= 4.0, "{r:?}");
        assert!(figure(&r, "messages_quiet") > 0.0 && figure(&r, "messages_while_erasing") > 0.0, "{r:?}");
        assert!(figure(&r, "p99_quiet_ms") > 0.0 && figure(&r, "p99_while_erasing_ms") > 0.0, "{r:?}");
        for zero in ["lost", "duplicated", "storage_errors"] {
            assert_eq!(r[zero], "0", "{zero}: {r:?}");
        }
    }
}

/// A share too small for the kernel's quota is refused before anything
/// runs (the database named here does not exist), with a clear error.
#[test]
fn relay_cluster_refuses_a_node_share_under_a_tenth_of_a_core() {
    let out = Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(["bench", "relay-cluster", "--node-cpus", "0.05"])
        .args(["--database-url", "postgres://postgres@127.0.0.1:1/none", "--nats-url", "nats://127.0.0.1:1"])
        .output()
        .expect("run bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a CPU share must be at least 0.1 cores, not 0.05"), "{stderr}");
    assert!(!stderr.contains("pgbench"), "it ran before refusing: {stderr}");
}
