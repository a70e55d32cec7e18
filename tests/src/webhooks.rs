//! A partner's webhook receiver for the tests: `tests/python/webhook_receiver.py`, a real HTTP
//! server that verifies each delivery with the official Standard Webhooks library from PyPI,
//! deduplicates on `webhook-id`, and answers each path as told (failures, 429/503 with
//! Retry-After, 410, redirects, delays). Killed on drop.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::process::Process;

/// The Python of the tools' venv, which has `standardwebhooks` (deploy/local/install.sh).
pub fn python() -> String {
    let bin = std::env::var("PY_TOOLS_PYTHON").unwrap_or_else(|_| {
        let cache = std::env::var("XDG_CACHE_HOME")
            .unwrap_or_else(|_| format!("{}/.cache", std::env::var("HOME").unwrap_or_default()));
        format!("{cache}/affiliate-platform/venv/bin/python")
    });
    let ready = std::process::Command::new(&bin)
        .args(["-c", "import standardwebhooks"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ready,
        "{bin} cannot import standardwebhooks: install it with `deploy/local/install.sh` (tests/run.sh does)"
    );
    bin
}

/// What a path of the receiver saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Every request in arrival order (id, timestamp, type, body, verified, signatures,
    /// answered, at).
    pub requests: Vec<Value>,
    /// Each `webhook-id` once, in the order a 2xx first answered it.
    pub accepted: Vec<String>,
}

impl Seen {
    /// The requests that carried `id`.
    pub fn of(&self, id: &str) -> Vec<&Value> {
        self.requests.iter().filter(|r| r["id"] == id).collect()
    }
}

pub struct Receiver {
    process: Process,
    pub addr: SocketAddr,
    client: reqwest::Client,
    test: String,
    journal: std::path::PathBuf,
}

fn spawn(test: &str, port: u16, journal: &std::path::Path) -> (Process, SocketAddr) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/webhook_receiver.py");
    let mut process = Process::start(
        "webhook-receiver",
        std::path::Path::new(&python()),
        &[
            script.display().to_string(),
            port.to_string(),
            journal.display().to_string(),
        ],
        &[],
        &crate::log_dir(test),
    );
    let addr = process.wait_for_addr("receiver listening", "addr", Duration::from_secs(30));
    (process, addr)
}

impl Receiver {
    /// Starts the receiver on a free port, its journal of accepted ids fresh under the test's
    /// log directory.
    pub fn start(test: &str) -> Self {
        let journal = crate::log_dir(test).join("webhook-receiver.journal");
        let _ = std::fs::remove_file(&journal);
        let (process, addr) = spawn(test, 0, &journal);
        Self {
            process,
            addr,
            client: reqwest::Client::new(),
            test: test.to_owned(),
            journal,
        }
    }

    /// Starts it again on the same port after [`Receiver::kill`]: it remembers the ids it
    /// accepted and its paths' settings (its journal), not its request log.
    pub fn restart(&mut self) {
        self.process.kill();
        let (process, addr) = spawn(&self.test, self.addr.port(), &self.journal);
        self.process = process;
        assert_eq!(addr, self.addr);
    }

    /// The URL of one of its paths (`/hooks/a`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Tells `path` how to verify and answer (see the script's documentation): `secrets`,
    /// `script`, `fail_ratio`, `fail_status`, `retry_after`, `status`, `delay_ms`, `location`,
    /// `seed`.
    pub async fn configure(&self, path: &str, config: Value) {
        let answer = self
            .client
            .post(format!("http://{}/_control/paths{path}", self.addr))
            .json(&config)
            .send()
            .await
            .expect("configure the receiver");
        assert_eq!(answer.status(), 204, "configure {path}");
    }

    pub async fn seen(&self, path: &str) -> Seen {
        let body: Value = self
            .client
            .get(format!("http://{}/_control/paths{path}", self.addr))
            .send()
            .await
            .expect("ask the receiver")
            .json()
            .await
            .expect("the receiver answers JSON");
        Seen {
            requests: body["requests"].as_array().cloned().unwrap_or_default(),
            accepted: body["accepted"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        }
    }

    /// Stops it at once (a partner's server going down); [`Receiver::restart`] brings it back.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
