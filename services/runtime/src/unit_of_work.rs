//! The unit of work every command runs in, whichever door it came through: begin a transaction
//! (or a savepoint, inside a consumer's batch), claim the idempotency key or replay the response
//! stored under it, run the handler's body on the transaction, append the outbox messages the
//! body decided on, store the response under the key, commit. A handler's body only decides:
//! it reads and writes its own tables and returns a [`Decision`]; an error anywhere rolls back
//! everything, the claim included, so a retry runs again.

use prost::Message;
use sqlx::{Acquire, PgConnection, Postgres};

use crate::context::CommandContext;
use crate::errors::Error;
use crate::idempotency::{remember, replay};
use crate::outbox::{self, OutboxMessage};

/// What a command's body decided: the answer to its caller and the messages its change causes
/// (published by the relay once the transaction commits).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<R> {
    pub response: R,
    pub messages: Vec<OutboxMessage>,
}

impl<R> Decision<R> {
    /// An answer that publishes nothing (e.g. a repeated command that changed nothing).
    pub fn answer(response: R) -> Self {
        Self {
            response,
            messages: Vec::new(),
        }
    }

    /// An answer and the one message its change causes.
    pub fn with(response: R, message: OutboxMessage) -> Self {
        Self {
            response,
            messages: vec![message],
        }
    }

    /// An answer and the messages its change causes, in order.
    pub fn with_all(response: R, messages: impl IntoIterator<Item = OutboxMessage>) -> Self {
        Self {
            response,
            messages: messages.into_iter().collect(),
        }
    }
}

/// Runs one command as one unit of work on `db`: a pool (a transaction of its own) or a
/// connection inside a transaction (a savepoint in it, so a consumer's batch keeps the others
/// when one fails). `operation` names the command in the idempotency record (e.g.
/// `campaign.create`): a key reused for another operation or another request is refused.
#[tracing::instrument(name = "db.transaction", skip_all, fields(otel.kind = "internal", db.system = "postgresql", operation = operation))]
pub async fn execute<'c, Req, Resp>(
    db: impl Acquire<'c, Database = Postgres>,
    ctx: &CommandContext,
    operation: &'static str,
    request: &Req,
    body: impl AsyncFnOnce(&mut PgConnection) -> Result<Decision<Resp>, Error>,
) -> Result<Resp, Error>
where
    Req: Message,
    Resp: Message + Default,
{
    let mut tx = db.begin().await?;
    if let Some(previous) = replay(&mut tx, ctx, operation, request).await? {
        return Ok(previous);
    }
    let Decision { response, messages } = body(&mut tx).await?;
    outbox::append(&mut tx, &messages)
        .await
        .map_err(Error::Internal)?;
    remember(&mut tx, ctx, &response).await?;
    tx.commit().await?;
    Ok(response)
}
