//! payment-service (being built).
fn main() {}
