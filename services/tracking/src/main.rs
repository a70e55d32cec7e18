//! tracking-service (being built).
fn main() {}
