//! What the run cost: the CPU time each platform process on this machine used between two
//! snapshots, divided by the purchases sent. A two-core machine is noisy; a cost per purchase is
//! far steadier than a rate, and says which process to work on.
//!
//! Processes are found in `/proc` by what they run: the platform's binaries by name, the Pulsar
//! broker (a JVM running a Pulsar starter class) and PostgreSQL (every `postgres` process; the
//! backends that ended during the run are counted through the postmaster's children's time).
//! Elsewhere than on Linux, or for a platform on another machine, nothing is found and the cost
//! is empty.

use std::collections::BTreeMap;

use serde::Serialize;

/// The platform's own binaries, named as their processes are.
const BINARIES: [&str; 11] = [
    "campaign-service",
    "tracking-service",
    "commission-service",
    "payment-service",
    "notification-service",
    "analytics-service",
    "webhook-service",
    "relay",
    "bff",
    "trace-viewer",
    "redirect",
];

/// CPU time (clock ticks) per process, by pid, with the label it counts under.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<u32, (String, u64)>);

impl Snapshot {
    /// Reads every process of the platform now.
    pub fn take() -> Self {
        let mut processes = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Self(processes);
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if let Some((label, ticks)) = classify(&stat, &cmdline) {
                processes.insert(pid, (label, ticks));
            }
        }
        Self(processes)
    }
}

/// The label a process counts under and its CPU ticks (user + system, plus its ended children's
/// for PostgreSQL), or `None` for a process that is not the platform's.
fn classify(stat: &str, cmdline: &[u8]) -> Option<(String, u64)> {
    // `pid (comm) state ppid … utime stime cutime cstime …`: comm may hold spaces, so the fields
    // are counted from the last ')'.
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is the state (field 3); utime is field 14, stime 15, cutime 16, cstime 17.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let own = field(14)? + field(15)?;
    let args: Vec<&str> = cmdline
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .collect();
    let program = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or(comm);
    if let Some(binary) = BINARIES.iter().find(|b| **b == program) {
        return Some(((*binary).to_owned(), own));
    }
    if comm == "java"
        && args
            .iter()
            .any(|a| a.starts_with("org.apache.pulsar.Pulsar"))
    {
        return Some(("pulsar".to_owned(), own));
    }
    if comm == "postgres" || program == "postgres" {
        return Some(("postgresql".to_owned(), own + field(16)? + field(17)?));
    }
    None
}

/// CPU used by one kind of process during the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessCost {
    pub cpu_ms: f64,
    pub cpu_ms_per_purchase: f64,
}

/// The run's cost, per process kind and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cost {
    pub per_process: BTreeMap<String, ProcessCost>,
    pub total_cpu_ms: f64,
    pub total_cpu_ms_per_purchase: f64,
}

/// What the processes used between `before` and `after`, per purchase of `purchases`. A process
/// that started during the run counts whole; one that ended is not counted (PostgreSQL's ended
/// backends are, through their postmaster).
pub fn between(before: &Snapshot, after: &Snapshot, purchases: u64) -> Cost {
    let ms_per_tick = 1000.0 / clock_ticks_per_second();
    let mut ticks: BTreeMap<String, u64> = BTreeMap::new();
    for (pid, (label, now)) in &after.0 {
        let then = match before.0.get(pid) {
            Some((same, then)) if same == label => *then,
            _ => 0,
        };
        *ticks.entry(label.clone()).or_default() += now.saturating_sub(then);
    }
    let per = |ms: f64| {
        if purchases > 0 {
            ms / purchases as f64
        } else {
            0.0
        }
    };
    let per_process: BTreeMap<String, ProcessCost> = ticks
        .into_iter()
        .map(|(label, t)| {
            let cpu_ms = t as f64 * ms_per_tick;
            let cost = ProcessCost {
                cpu_ms,
                cpu_ms_per_purchase: per(cpu_ms),
            };
            (label, cost)
        })
        .collect();
    let total_cpu_ms = per_process.values().map(|c| c.cpu_ms).sum();
    Cost {
        per_process,
        total_cpu_ms,
        total_cpu_ms_per_purchase: per(total_cpu_ms),
    }
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100, Linux's value, if it cannot say).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, comm: &str, utime: u64, stime: u64, cutime: u64) -> String {
        format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 {utime} {stime} {cutime} 0 20 0 4 0 100 1000 10"
        )
    }

    #[test]
    fn processes_are_told_apart_by_what_they_run() {
        let service = b"/x/target/release/commission-service\0";
        assert_eq!(
            classify(&stat(7, "commission-serv", 30, 12, 0), service),
            Some(("commission-service".into(), 42))
        );
        let broker = b"java\0-cp\0lib/*\0org.apache.pulsar.PulsarStandaloneStarter\0-nfw\0";
        assert_eq!(
            classify(&stat(8, "java", 100, 50, 0), broker),
            Some(("pulsar".into(), 150))
        );
        let other_java = b"java\0-jar\0something.jar\0";
        assert_eq!(classify(&stat(9, "java", 1, 1, 0), other_java), None);
        let postmaster = b"/usr/lib/postgresql/15/bin/postgres\0-D\0data\0";
        assert_eq!(
            classify(&stat(10, "postgres", 5, 5, 90), postmaster),
            Some(("postgresql".into(), 100)),
            "the ended backends' time comes through the postmaster"
        );
        let backend = b"postgres: platform commission 127.0.0.1(5000) idle\0";
        assert_eq!(
            classify(&stat(11, "postgres", 3, 1, 0), backend),
            Some(("postgresql".into(), 4))
        );
        assert_eq!(classify(&stat(12, "bash", 1, 1, 0), b"bash\0"), None);
        assert_eq!(
            classify(&stat(13, "a (weird) name", 1, 1, 0), b"relay\0"),
            Some(("relay".into(), 2)),
            "a comm with spaces and parentheses"
        );
    }

    #[test]
    fn the_cost_is_what_each_kind_used_in_between_per_purchase() {
        let before = Snapshot(BTreeMap::from([
            (1, ("relay".to_owned(), 100)),
            (2, ("postgresql".to_owned(), 50)),
        ]));
        let after = Snapshot(BTreeMap::from([
            (1, ("relay".to_owned(), 300)),
            (2, ("postgresql".to_owned(), 150)),
            (3, ("postgresql".to_owned(), 100)),
        ]));
        let cost = between(&before, &after, 1000);
        let tick = 1000.0 / clock_ticks_per_second();
        assert_eq!(cost.per_process["relay"].cpu_ms, 200.0 * tick);
        assert_eq!(cost.per_process["postgresql"].cpu_ms, 200.0 * tick);
        assert_eq!(cost.total_cpu_ms, 400.0 * tick);
        assert!((cost.total_cpu_ms_per_purchase - 0.4 * tick).abs() < 1e-9);
        assert_eq!(between(&before, &after, 0).total_cpu_ms_per_purchase, 0.0);
    }
}
