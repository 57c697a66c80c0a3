//! CPU time of processes and threads from /proc, for the benchmarks'
//! figures per unit of work: on a shared 2-core machine, CPU time per event
//! varies far less than wall time.

use std::process::Command;
use std::time::Duration;

/// CPU time a process has used so far (user and system), from
/// /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Duration {
    let (user, system) = stat_cpu(&format!("/proc/{pid}/stat"));
    user + system
}

/// CPU time by thread name (librdkafka's `rdk:broker1`, tokio's workers),
/// the numbers in names folded so that threads of a kind add up.
/// Each kind's user and system time.
pub fn cpu_by_thread(pid: u32) -> std::collections::BTreeMap<String, (Duration, Duration)> {
    let mut by = std::collections::BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let kind: String = name
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_owned();
        let (user, system) = stat_cpu(&path.join("stat").display().to_string());
        let slot = by.entry(kind).or_insert((Duration::ZERO, Duration::ZERO));
        slot.0 += user;
        slot.1 += system;
    }
    by
}

/// User and system time from a stat file.
pub fn stat_cpu(path: &str) -> (Duration, Duration) {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th of them, in clock ticks.
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let hz = clock_ticks_per_second();
    (
        Duration::from_secs_f64(ticks(11) as f64 / hz),
        Duration::from_secs_f64(ticks(12) as f64 / hz),
    )
}

fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The pid of the stack service `name` (`kafka`, `clickhouse`, ...), if
/// its pid file is where `local-stack.sh` keeps it.
pub fn stack_pid(name: &str) -> Option<u32> {
    let dir = std::env::var("TRIBUTARY_STACK_DIR").map_or_else(
        |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.stack"),
        std::path::PathBuf::from,
    );
    std::fs::read_to_string(dir.join(format!("run/{name}.pid")))
        .ok()
        .and_then(|p| p.lines().next().and_then(|l| l.trim().parse().ok()))
}
