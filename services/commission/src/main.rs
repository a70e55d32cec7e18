//! commission-service (being built).
fn main() {}
