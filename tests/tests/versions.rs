//! Every binary's `--version` names the git revision it was built from: the checkout's HEAD
//! (built by `cargo build --workspace --bins`, as tests/run.sh does before the tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use e2e::process::binary;

const BINARIES: [&str; 10] = [
    "campaign-service",
    "tracking-service",
    "commission-service",
    "payment-service",
    "notification-service",
    "analytics-service",
    "relay",
    "bff",
    "platform",
    "trace-viewer",
];

fn head() -> String {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run git: this test compares --version with the checkout's HEAD");
    assert!(output.status.success(), "git rev-parse HEAD failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn every_binary_names_the_revision_it_was_built_from() {
    let head = head();
    for name in BINARIES {
        let output = Command::new(binary(name))
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("run {name} --version: {e}"));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{name} --version failed: {text}");
        let expected = format!("{name} {} (rev {head}", env!("CARGO_PKG_VERSION"));
        assert!(
            text.starts_with(&expected),
            "{name} --version says `{}`, expected it to start with `{expected}` (rebuild the \
             binaries from this checkout: cargo build --workspace --bins)",
            text.trim()
        );
    }
}
