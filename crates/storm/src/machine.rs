//! What the machine itself gives a benchmark, read beside it: the share of
//! CPU time the hypervisor kept for others (steal, from `/proc/stat`), and
//! the CPU time a fixed piece of work takes (`Probe`). When a server's CPU
//! per message moves while its work does not, these tell whether the
//! machine moved. And what a benchmark may give a process of it: a share
//! of the cores (`CpuShare`), to run a node as if on a machine of its own.

use std::path::{Path, PathBuf};
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

/// Where the cgroup v1 `cpu` controller is mounted.
const CPU_CGROUPS: &str = "/sys/fs/cgroup/cpu";

/// The quota's period, in µs: short, so that a process that used its share
/// early waits milliseconds for the next, not the default 100 ms.
const QUOTA_PERIOD_US: u64 = 10_000;

/// A share of the machine's cores for one process and every thread it has
/// or starts: a cgroup (v1 `cpu` controller) of its own, with a CFS quota
/// of `cpus` cores. `bench relay-cluster --node-cpus` gives each node one,
/// so that a second node brings cores of its own, as a second machine
/// would. When dropped, the process goes back to the group it came from
/// and the group is removed.
#[derive(Debug)]
pub struct CpuShare {
    dir: PathBuf,
    pid: u32,
    home: PathBuf,
}

impl CpuShare {
    /// Whether `cpus` can be a share: at least 0.1 cores, the kernel's
    /// smallest quota being 1 ms a period.
    pub fn check(cpus: f64) -> anyhow::Result<()> {
        anyhow::ensure!(cpus.is_finite() && cpus >= 0.1, "a CPU share must be at least 0.1 cores, not {cpus}");
        Ok(())
    }

    /// Limit process `pid` to `cpus` cores (see [`CpuShare::check`]). Needs
    /// the controller mounted at `/sys/fs/cgroup/cpu` and writable, as for
    /// root on a cgroup v1 host.
    pub fn limit(pid: u32, cpus: f64) -> anyhow::Result<CpuShare> {
        use anyhow::Context as _;
        Self::check(cpus)?;
        let root = Path::new(CPU_CGROUPS);
        anyhow::ensure!(
            root.join("cpu.cfs_quota_us").exists(),
            "a CPU share needs the cgroup v1 cpu controller at {CPU_CGROUPS} (not found)"
        );
        let home = root.join(cpu_cgroup_of(pid).with_context(|| format!("process {pid}'s cpu cgroup"))?);
        let dir = root.join(format!("holdfast-bench-{}-{pid}", std::process::id()));
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {} (run as root?)", dir.display()))?;
        // From here on, dropping the share removes the group.
        let share = CpuShare { dir, pid, home };
        let quota = (cpus * QUOTA_PERIOD_US as f64).round() as u64;
        for (file, value) in
            [("cpu.cfs_period_us", QUOTA_PERIOD_US), ("cpu.cfs_quota_us", quota), ("cgroup.procs", u64::from(pid))]
        {
            let path = share.dir.join(file);
            std::fs::write(&path, value.to_string()).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(share)
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        // A process that has ended is gone from the group already.
        let _ = std::fs::write(self.home.join("cgroup.procs"), self.pid.to_string());
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("warning: could not remove {}: {e}", self.dir.display());
        }
    }
}

/// Process `pid`'s group under the `cpu` controller, relative to its root,
/// from `/proc/PID/cgroup` (a line `N:cpu,cpuacct:/path` or `N:cpu:/path`).
fn cpu_cgroup_of(pid: u32) -> anyhow::Result<PathBuf> {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    groups
        .lines()
        .find_map(|line| {
            let (controllers, path) = line.split_once(':')?.1.split_once(':')?;
            controllers.split(',').any(|c| c == "cpu").then(|| PathBuf::from(path.trim_start_matches('/')))
        })
        .ok_or_else(|| anyhow::anyhow!("no cpu controller in /proc/{pid}/cgroup"))
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

    /// A busy process held to a fifth of a core uses about that much, and
    /// goes back where it was when the share is dropped.
    #[test]
    fn a_cpu_share_holds_a_busy_process_to_its_quota_until_dropped() {
        /// Killed when dropped, so a failed assertion leaves no spinner.
        struct Spinner(std::process::Child);
        impl Drop for Spinner {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let spinner =
            Spinner(std::process::Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("a spinner"));
        let pid = spinner.0.id();
        let home = cpu_cgroup_of(pid).unwrap();
        let share = CpuShare::limit(pid, 0.2).unwrap();
        assert_eq!(cpu_cgroup_of(pid).unwrap(), share.dir.strip_prefix(CPU_CGROUPS).unwrap());
        let before = crate::server::process_cpu_s(pid).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let used = crate::server::process_cpu_s(pid).unwrap() - before;
        // 0.4 s allowed in the 2 s; unlimited, it would take up to 2 s.
        assert!(used > 0.05 && used < 0.6, "the spinner used {used} s of CPU in 2 s");
        let dir = share.dir.clone();
        drop(share);
        assert!(!dir.exists(), "{} is left", dir.display());
        assert_eq!(cpu_cgroup_of(pid).unwrap(), home);
        drop(spinner);
        assert!(CpuShare::limit(std::process::id(), 0.05).is_err(), "a share under 0.1 cores is refused");
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
