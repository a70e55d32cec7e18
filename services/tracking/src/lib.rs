//! The tracking service (being built).
