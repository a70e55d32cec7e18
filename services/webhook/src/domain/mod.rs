//! What the webhook service decides, without I/O: the Standard Webhooks signature, the secrets'
//! sealing at rest, the retry schedule, the rate limits' buckets, which destinations are refused,
//! and which events partners receive and who owns them.

pub mod destination;
pub mod event;
pub mod rate;
pub mod schedule;
pub mod sealing;
pub mod signature;
