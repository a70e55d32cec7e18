//! Running the platform's containers from tests: the scripts of `deploy/containers` (the
//! container world, the image, Docker Compose against podman, the Helm chart's pods) and podman
//! itself, every call bounded in time; what a container must be (non-root, read-only root, no
//! capabilities) checked on the running process.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The images `deploy/containers/setup.sh` makes (the stand-ins of the base images).
const STAND_INS: [&str; 3] = [
    "gcr.io/distroless/cc-debian12:nonroot",
    "docker.io/library/postgres:15-bookworm",
    "docker.io/apachepulsar/pulsar:4.0.7",
];

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/containers-test/<what>/`: the logs and generated files of a container test.
pub fn logs_dir(what: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let dir = target.join("containers-test").join(what);
    std::fs::create_dir_all(&dir).expect("create the test's log dir");
    dir
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a command to its end (killed after `timeout`), returning its output.
pub fn run(mut command: Command, timeout: Duration) -> Output {
    let shown = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{shown}: {e}"));
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(timeout) {
        Ok(output) => output.unwrap_or_else(|e| panic!("{shown}: {e}")),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            panic!("{shown} did not finish within {timeout:?}");
        }
    }
}

/// `deploy/containers/<name> <args>`.
pub fn script(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(repo().join("deploy/containers").join(name));
    command.args(args);
    command
}

/// podman with the project's settings (`deploy/containers/containers.conf`), bounded to a minute.
pub fn podman(args: &[&str]) -> Output {
    let mut command = Command::new("podman");
    command.args(args).env(
        "CONTAINERS_CONF",
        repo().join("deploy/containers/containers.conf"),
    );
    run(command, Duration::from_secs(60))
}

/// The output of a command that must succeed.
pub fn must(what: &str, output: Output) -> String {
    assert!(output.status.success(), "{what} failed:\n{}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Fails, saying what to run, unless podman and the stand-in base images are there; then packs
/// the platform's image from this build's debug binaries (`image.sh packed debug`).
pub fn prepare_image() {
    let ready = Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ready,
        "podman is not installed: run deploy/containers/setup.sh (it installs podman, makes the stand-in base images and builds Docker Compose)"
    );
    for image in STAND_INS {
        assert!(
            podman(&["image", "exists", image]).status.success(),
            "the stand-in image {image} is missing: run deploy/containers/setup.sh"
        );
    }
    let packed = run(
        script("image.sh", &["packed", "debug"]),
        Duration::from_secs(300),
    );
    must("deploy/containers/image.sh packed debug", packed);
}

/// `podman inspect` of one container or pod (`what` is `container` or `pod`).
pub fn inspect(what: &str, name: &str) -> Value {
    let out = must("podman inspect", podman(&[what, "inspect", name]));
    let value: Value = serde_json::from_str(&out).expect("podman inspect prints JSON");
    match value {
        Value::Array(mut list) if !list.is_empty() => list.swap_remove(0),
        other => other,
    }
}

/// Asserts that a running container of the platform's image runs as it must: as 65532 (user and
/// group, as the kernel sees the process), on a read-only root, with no capabilities and no way
/// to gain privileges.
pub fn assert_confined(name: &str, container: &Value) {
    assert_eq!(
        container["HostConfig"]["ReadonlyRootfs"], true,
        "{name}'s root is writable"
    );
    let pid = container["State"]["Pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} has no process: {}", container["State"]));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("{name}: /proc/{pid}/status: {e}"));
    let field = |key: &str| -> Vec<String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    for key in ["Uid:", "Gid:"] {
        let ids = field(key);
        assert!(
            !ids.is_empty() && ids.iter().all(|u| u == "65532"),
            "{name}: {key} {ids:?}, not 65532"
        );
    }
    assert_eq!(
        field("CapEff:"),
        ["0000000000000000"],
        "{name} has capabilities"
    );
    assert_eq!(field("NoNewPrivs:"), ["1"], "{name} may gain privileges");
}
