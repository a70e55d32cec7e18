//! What the webhook service decides, without I/O: the Standard Webhooks signature, the secrets'
//! sealing at rest, the retry schedule, which destinations are refused, and which events partners
//! receive and who owns them.

pub mod destination;
pub mod event;
pub mod schedule;
pub mod sealing;
pub mod signature;
