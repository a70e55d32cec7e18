//! The tracking domain: rules and values, with no I/O. Handlers call these before they touch
//! the database, so bad input is refused before anything is written.

mod attribution;
pub mod conversions;
pub mod links;
mod rules;

pub use attribution::*;
pub use links::{LinkSettings, NewLink};
pub use rules::*;
pub use service_runtime::money::is_iso_4217;
pub use service_runtime::validation::{FieldViolation, Violations, page_size, parse_id};
