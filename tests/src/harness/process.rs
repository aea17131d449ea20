//! A child process of a test: its stdout and stderr lines collected (and echoed, prefixed
//! with its name, to the test's output), waited on for a line or its exit, signalled, and
//! killed when the test is done with it or fails; and the CPU time a process has spent, for
//! the benches.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child process; SIGKILLed and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    /// Starts `cmd` as `name`, its stdout and stderr piped to reader threads.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let (tx, lines) = mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let (tx, name) = (tx.clone(), name.to_owned());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{name}] {line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn pump(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The first line printed so far that contains `needle`.
    pub fn find(&mut self, needle: &str) -> Option<String> {
        self.pump();
        self.seen.iter().find(|l| l.contains(needle)).cloned()
    }

    /// How many lines printed so far contain `needle`.
    pub fn count(&mut self, needle: &str) -> usize {
        self.pump();
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits for a line that contains `needle` and returns it; panics, with everything the
    /// process printed, if it exits first or `timeout` passes.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_nth_line(needle, 0, timeout)
    }

    /// [`wait_line`](Self::wait_line) for the `n`th such line (from 0): for a process that
    /// prints one per piece of work, the line of the `n`th piece.
    pub fn wait_nth_line(&mut self, needle: &str, n: usize, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        loop {
            self.pump();
            if let Some(line) = self.seen.iter().filter(|l| l.contains(needle)).nth(n) {
                return line.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads hand over the last lines.
                std::thread::sleep(Duration::from_millis(100));
                self.pump();
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.seen.join("\n")
                );
            }
            assert!(
                Instant::now() < until,
                "{} printed no {needle:?} within {timeout:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Sends `signal` (`-TERM`, `-STOP`, `-CONT`, …) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {}", self.name);
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit (after a signal) and returns its status, with its last
    /// lines collected; panics if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads hand over the last lines.
                std::thread::sleep(Duration::from_millis(100));
                self.pump();
                return status;
            }
            assert!(
                Instant::now() < until,
                "{} still running {timeout:?} after the signal",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of each live thread of `pid` so far, in ns (Linux `schedstat`; empty elsewhere).
pub fn cpu_ns(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for (task, ns) in thread_cpu_ns(pid) {
        let tid = task.file_name().unwrap_or_default().to_string_lossy();
        out.insert(tid.into_owned(), ns);
    }
    out
}

/// As [`cpu_ns`], summed by thread name (`comm`) instead of thread id: what a pool of
/// threads of one name spent, whichever of them ran.
pub fn cpu_ns_by_name(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for (task, ns) in thread_cpu_ns(pid) {
        if let Ok(name) = std::fs::read_to_string(task.join("comm")) {
            *out.entry(name.trim_end().to_owned()).or_default() += ns;
        }
    }
    out
}

/// Each live thread's `/proc/PID/task/TID` and its CPU time so far in ns.
fn thread_cpu_ns(pid: u32) -> Vec<(std::path::PathBuf, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let ns = text.split_whitespace().next()?.parse().ok()?;
            Some((task.path(), ns))
        })
        .collect()
}

/// CPU ms between two [`cpu_ns`] snapshots: threads that ended in between are left out (a
/// short-lived resolver thread would otherwise read as negative time).
pub fn cpu_ms(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> f64 {
    let ns: u64 = after
        .iter()
        .map(|(tid, &ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    ns as f64 / 1e6
}
