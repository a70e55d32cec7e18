//! The commission service (being built).
