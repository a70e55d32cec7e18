//! The campaign domain: rules and values, with no I/O. Handlers call these before they touch
//! the database, so bad input is refused before anything is written.

mod currency;
mod rules;

pub use currency::is_iso_4217;
pub use rules::*;
