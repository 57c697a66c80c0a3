//! Stack samples of one process during one phase of a benchmark, with
//! `perf record`, for `perf report`: where the CPU time that [`crate::cpu`]
//! counts goes.
//!
//! Off unless `BENCH_PERF_DIR` names a directory. The sampling uses the
//! software clock (`cpu-clock`), which works where hardware counters do
//! not, and unwinds with DWARF, which needs no frame pointers. It costs CPU
//! of its own: figures printed beside a sampled phase are not comparable to
//! those of a run without it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Samples per second and thread.
const FREQUENCY: &str = "999";

/// A `perf record` running against one process.
pub struct Profile {
    child: Child,
    out: PathBuf,
}

impl Profile {
    /// Starts sampling `pid` into `$BENCH_PERF_DIR/<phase>.data`; `None`
    /// when `BENCH_PERF_DIR` is not set. Panics when `perf` cannot start:
    /// the caller asked for a profile.
    pub fn start(pid: u32, phase: &str) -> Option<Self> {
        let dir = PathBuf::from(std::env::var_os("BENCH_PERF_DIR")?);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let out = dir.join(format!("{phase}.data"));
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", FREQUENCY])
            .args(["--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run perf ({e}): apt-get install linux-perf, or unset BENCH_PERF_DIR")
            });
        Some(Self { child, out })
    }

    /// Stops sampling (SIGINT, as at a terminal) and waits until the
    /// profile is written; prints where it is.
    pub fn stop(mut self) {
        let id = self.child.id().to_string();
        let interrupted = Command::new("kill").args(["-INT", &id]).status();
        let status = match interrupted {
            Ok(s) if s.success() => self.child.wait(),
            _ => {
                let _ = self.child.kill();
                self.child.wait()
            }
        };
        match status {
            // perf exits 0 or with SIGINT's status after an interrupt.
            Ok(_) if self.out.exists() => println!("  profile: {}", self.out.display()),
            Ok(s) => eprintln!("  perf record wrote no profile ({s})"),
            Err(e) => eprintln!("  perf record was lost: {e}"),
        }
    }
}
