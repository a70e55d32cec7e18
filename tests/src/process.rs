//! The platform's binaries as child processes: started with a config, their stderr (JSON log
//! lines) copied to a log file and scanned for readiness, killed when dropped.

#![allow(clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The cargo target directory these tests were built in.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .expect("test binary lives under target/")
}

/// Path of a workspace binary built next to the tests (`cargo build --workspace` first).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.ancestors().nth(2).expect("target/<profile>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (tests/run.sh does)",
        path.display()
    );
    path
}

/// A running child process; SIGKILLed on drop.
pub struct Process {
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    pub log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args` and `env`, logging to `log_dir/<name>.log` (appending, so
    /// restarts of one name share a file).
    pub fn start(
        name: &str,
        binary: &Path,
        args: &[String],
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open process log");
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info,sqlx=warn,pulsar=warn,h2=warn")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(file, "{line}");
                let _ = tx.send(line);
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
            log,
        }
    }

    /// Waits until a log line contains `needle`; returns it. Panics (pointing at the log) if
    /// the process exits or `timeout` passes first.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!(
                            "{} exited ({status}) before logging `{needle}`; see {}",
                            self.name,
                            self.log.display()
                        );
                    }
                    if left.is_zero() {
                        panic!(
                            "{} did not log `{needle}` within {timeout:?}; see {}",
                            self.name,
                            self.log.display()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{} closed its log before `{needle}`; see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
        }
    }

    /// Waits for the gRPC server's "listening" line and returns the bound address.
    pub fn wait_for_grpc_addr(&mut self, timeout: Duration) -> SocketAddr {
        self.wait_for_addr("gRPC server listening", "addr", timeout)
    }

    /// Waits for the log line containing `needle` and returns the address in its `field`.
    pub fn wait_for_addr(&mut self, needle: &str, field: &str, timeout: Duration) -> SocketAddr {
        let line = self.wait_for_line(needle, timeout);
        addr_field(&line, field)
    }
}

/// The socket address in `field` of a JSON log line.
pub fn addr_field(line: &str, field: &str) -> SocketAddr {
    let value: serde_json::Value = serde_json::from_str(line).expect("log lines are JSON");
    value[field]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no `{field}` address in `{line}`"))
}

impl Process {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `SIG<signal>` (e.g. `STOP`, `CONT`), failing the test if it cannot be sent.
    pub fn signal(&mut self, signal: &str) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "send SIG{signal} to {}", self.name);
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether it exited 0.
    /// Async, so the test's own connections keep being served while the process drains.
    pub async fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, once it has (it is reaped then); `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
