//! Stack samples of one process during one phase of a benchmark, with
//! `perf record`, for `perf report`: where the CPU time that [`crate::cpu`]
//! counts goes.
//!
//! Off unless `BENCH_PERF_DIR` names a directory. The sampling uses the
//! software clock (`cpu-clock`), which works where hardware counters do
//! not, and unwinds with DWARF, which needs no frame pointers. It costs CPU
//! of its own: figures printed beside a sampled phase are not comparable to
//! those of a run without it. A profile not stopped (a panic between) ends
//! when the sampled process does.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// Samples per second and thread.
const FREQUENCY: &str = "999";

/// Where profiles go, from `BENCH_PERF_DIR`'s value: set but empty is off
/// too, not the working directory.
fn profile_dir(value: Option<OsString>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// A `perf record` running against one process.
pub struct Profile {
    child: Child,
    out: PathBuf,
    log: PathBuf,
}

impl Profile {
    /// Starts sampling `pid` into `$BENCH_PERF_DIR/<phase>.data`; `None`
    /// when `BENCH_PERF_DIR` is not set or empty. Panics when `perf` cannot start:
    /// the caller asked for a profile.
    pub fn start(pid: u32, phase: &str) -> Option<Self> {
        let dir = profile_dir(std::env::var_os("BENCH_PERF_DIR"))?;
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let out = dir.join(format!("{phase}.data"));
        let log = dir.join(format!("{phase}.log"));
        let stderr = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", FREQUENCY])
            .args(["--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run perf ({e}): apt-get install linux-perf, or unset BENCH_PERF_DIR")
            });
        Some(Self { child, out, log })
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
        // perf writes its file on SIGINT and then ends by that signal
        // again (or exits 0); anything else is a failure its log explains.
        // Its header is written at once: only its closing line ("...
        // Captured and wrote ...") says the samples are in.
        let ended = status.map(|s| s.success() || s.signal() == Some(2));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        match ended {
            Ok(true) if log.contains("Captured and wrote") => {
                println!("  profile: {}", self.out.display())
            }
            Ok(_) => eprintln!(
                "  perf record wrote no usable profile: see {}",
                self.log.display()
            ),
            Err(e) => eprintln!("  perf record was lost: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_missing_directory_means_no_profile() {
        assert_eq!(profile_dir(None), None);
        assert_eq!(profile_dir(Some(OsString::new())), None);
        assert_eq!(
            profile_dir(Some(OsString::from("/tmp/p"))),
            Some(PathBuf::from("/tmp/p"))
        );
    }
}
