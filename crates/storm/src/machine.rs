//! What the machine itself gives a benchmark, read beside it: the share of
//! CPU time the hypervisor kept for others (steal, from `/proc/stat`), and
//! the CPU time a fixed piece of work takes (`Probe`). When a server's CPU
//! per message moves while its work does not, these tell whether the
//! machine moved.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The machine's CPU counters since boot, in clock ticks (USER_HZ, 100 a
/// second on Linux), from the first line of `/proc/stat`: user nice system
/// idle iowait irq softirq steal (the guest times after them are counted in
/// user and nice already, so left out).
fn cpu_fields() -> Option<[u64; 8]> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    fields.get(..8)?.try_into().ok()
}

/// (all time, stolen time), in clock ticks.
fn cpu_ticks() -> Option<(u64, u64)> {
    let fields = cpu_fields()?;
    Some((fields.iter().sum(), fields[7]))
}

/// The machine's (busy, all) CPU time since boot, in clock ticks: busy is
/// all but idle and waiting for I/O.
pub fn busy_ticks() -> Option<(f64, f64)> {
    let fields = cpu_fields()?;
    let all: u64 = fields.iter().sum();
    Some(((all - fields[3] - fields[4]) as f64, all as f64))
}

/// The CPU time (s) of every running process whose command is one of
/// `commands`, summed by command, from `/proc/PID/stat`: what the
/// database's and the bus's processes spent beside a bench's own. A
/// process that ends between two readings takes its time with it.
pub fn cpu_s_by_command(commands: &[&str]) -> Option<Vec<f64>> {
    let mut sums = vec![0.0; commands.len()];
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let command = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')')).map(|(c, _)| c);
        if let Some(at) = command.and_then(|c| commands.iter().position(|want| *want == c)) {
            sums[at] += crate::server::stat_cpu_s(&stat).unwrap_or(0.0);
        }
    }
    Some(sums)
}

/// Steal time, interval by interval.
pub struct Steal {
    last: Option<(u64, u64)>,
}

impl Steal {
    pub fn start() -> Steal {
        Steal { last: cpu_ticks() }
    }

    /// The share of the machine's CPU time stolen since the last call (or
    /// the start), in percent; `None` where `/proc/stat` cannot be read.
    pub fn percent(&mut self) -> Option<f64> {
        let now = cpu_ticks()?;
        let (total, steal) = self.last.replace(now)?;
        let all = now.0.saturating_sub(total);
        (all > 0).then(|| now.1.saturating_sub(steal) as f64 * 100.0 / all as f64)
    }
}

/// A thread that does the same small piece of work four times a second and
/// records the CPU time it took (its own thread's clock, so waiting for a
/// core does not count; a slower core, a shared cache or a busy sibling
/// does). Stopped when dropped.
pub struct Probe {
    samples: Arc<Mutex<Vec<f64>>>,
    stop: Arc<AtomicBool>,
}

/// Words of the buffer the probe walks: 4 MiB, more than a core's own caches.
const WALK_WORDS: usize = 1 << 20;

impl Probe {
    pub fn start() -> std::io::Result<Probe> {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (into, stopping) = (samples.clone(), stop.clone());
        std::thread::Builder::new().name("machine-probe".into()).spawn(move || {
            let walk = cycle(WALK_WORDS);
            while !stopping.load(Ordering::Relaxed) {
                let began = thread_cpu_ns();
                std::hint::black_box(work(&walk));
                let took_us = thread_cpu_ns().saturating_sub(began) as f64 / 1000.0;
                into.lock().unwrap_or_else(|e| e.into_inner()).push(took_us);
                std::thread::sleep(Duration::from_millis(250));
            }
        })?;
        Ok(Probe { samples, stop })
    }

    /// The median CPU time of the work since the last call, in µs.
    pub fn median_us(&self) -> Option<f64> {
        let mut taken = std::mem::take(&mut *self.samples.lock().unwrap_or_else(|e| e.into_inner()));
        (!taken.is_empty()).then(|| crate::percentile(&mut taken, 50.0))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// This thread's CPU time, in ns.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A permutation of `0..n` that is one cycle (Sattolo's shuffle), to walk
/// in an order no prefetcher guesses.
fn cycle(n: usize) -> Vec<u32> {
    let mut next: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        next.swap(i, (x % i as u64) as usize);
    }
    next
}

/// The fixed piece of work: arithmetic, then 100,000 dependent loads
/// across the walk's 4 MiB.
fn work(walk: &[u32]) -> u64 {
    let (mut x, mut acc) = (0x2545_F491_4F6C_DD1Du64, 0u64);
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_add(x.wrapping_mul(0xff51_afd7_ed55_8ccd));
    }
    let mut at = 0usize;
    for _ in 0..100_000 {
        at = walk[at] as usize;
    }
    acc.wrapping_add(at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_is_one_cycle_through_every_word() {
        let walk = cycle(1000);
        let (mut at, mut seen) = (0usize, vec![false; 1000]);
        for _ in 0..1000 {
            assert!(!seen[at], "word {at} came back before the end");
            seen[at] = true;
            at = walk[at] as usize;
        }
        assert_eq!(at, 0);
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn the_counters_give_a_share_and_the_probe_a_time() {
        let mut steal = Steal::start();
        let probe = Probe::start().unwrap();
        // The probe's first sample waits for its walk to be built, slow in
        // a debug build on a busy machine: wait for it, within a bound.
        let until = std::time::Instant::now() + Duration::from_secs(30);
        let median = loop {
            std::thread::sleep(Duration::from_millis(100));
            match probe.median_us() {
                Some(us) => break us,
                None => assert!(std::time::Instant::now() < until, "no probe sample within 30 s"),
            }
        };
        assert!(median > 0.0, "{median}");
        let share = steal.percent().expect("/proc/stat is read");
        assert!((0.0..=100.0).contains(&share), "{share}");
    }
}
