//! What a binary was built from, for its `--version`: the workspace version and the git revision
//! of the checkout (`git describe --always --dirty`, abbreviated to 12 hex digits; `-modified`
//! when the tree had uncommitted changes; `unknown` when built outside a git checkout, as in a
//! container build without `.git`).
//!
//! Only binaries (`main.rs`) use this, so a new commit rebuilds this crate and relinks them, not
//! the libraries.

/// e.g. `0.1.0 (rev 3324e51a0b1c)`.
pub const VERSION: &str = git_version::git_version!(
    args = [
        "--always",
        "--dirty=-modified",
        "--abbrev=12",
        "--exclude=*"
    ],
    prefix = concat!(env!("CARGO_PKG_VERSION"), " (rev "),
    suffix = ")",
    fallback = concat!(env!("CARGO_PKG_VERSION"), " (rev unknown)")
);

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_names_a_revision() {
        let revision = super::VERSION
            .strip_prefix(concat!(env!("CARGO_PKG_VERSION"), " (rev "))
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_default();
        let hex = revision.trim_end_matches("-modified");
        assert!(
            hex == "unknown" || (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())),
            "{}",
            super::VERSION
        );
    }
}
