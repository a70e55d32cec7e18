//! Idempotency records. A command with a key first claims the key in its own transaction; a
//! retry (through either door) finds the stored response and returns it without writing again.

use prost::Message;
use sqlx::PgConnection;

use crate::context::CommandContext;

/// What claiming a key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new: run the command, then [`complete`] in the same transaction.
    Fresh,
    /// The command already ran with this key: here is its encoded response.
    Replay(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key was used before for a different operation or request body.
    #[error("idempotency key `{0}` was already used for a different request")]
    KeyReused(String),
    #[error("idempotency record: {0}")]
    Database(#[from] sqlx::Error),
}

/// Claims `key` for `operation` with the encoded `request`, on the caller's transaction.
///
/// The insert comes first, so a concurrent attempt with the same key waits on the primary key
/// until this transaction ends: it then replays our response, or runs itself if we rolled back.
pub async fn claim(
    conn: &mut PgConnection,
    key: &str,
    operation: &str,
    request: &[u8],
) -> Result<Claim, IdempotencyError> {
    let inserted = sqlx::query!(
        r#"
        insert into idempotency_keys (idempotency_key, operation, request)
        values ($1, $2, $3)
        on conflict (idempotency_key) do nothing
        "#,
        key,
        operation,
        request,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let stored = sqlx::query!(
        r#"
        select operation, request, response
        from idempotency_keys
        where idempotency_key = $1
        "#,
        key,
    )
    .fetch_one(&mut *conn)
    .await?;
    match stored.response {
        Some(response) if stored.operation == operation && stored.request == request => {
            Ok(Claim::Replay(response))
        }
        _ => Err(IdempotencyError::KeyReused(key.to_owned())),
    }
}

/// Stores the encoded response of a [`Claim::Fresh`] key, on the same transaction.
pub async fn complete(
    conn: &mut PgConnection,
    key: &str,
    response: &[u8],
) -> Result<(), IdempotencyError> {
    sqlx::query!(
        r#"
        update idempotency_keys set response = $2 where idempotency_key = $1
        "#,
        key,
        response,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims the context's idempotency key (if it has one) for `operation` with `request`, on the
/// caller's transaction. `Some(response)` means the command already ran: return that and write
/// nothing.
pub async fn replay<Req: Message, Resp: Message + Default>(
    conn: &mut PgConnection,
    ctx: &CommandContext,
    operation: &str,
    request: &Req,
) -> Result<Option<Resp>, IdempotencyError> {
    let Some(key) = ctx.idempotency_key.as_deref() else {
        return Ok(None);
    };
    match claim(conn, key, operation, &request.encode_to_vec()).await? {
        Claim::Fresh => Ok(None),
        Claim::Replay(bytes) => Resp::decode(bytes.as_slice()).map(Some).map_err(|e| {
            IdempotencyError::Database(sqlx::Error::Decode(
                format!("stored {operation} response: {e}").into(),
            ))
        }),
    }
}

/// Stores `response` under the context's idempotency key, if it has one, on the same transaction.
pub async fn remember<Resp: Message>(
    conn: &mut PgConnection,
    ctx: &CommandContext,
    response: &Resp,
) -> Result<(), IdempotencyError> {
    if let Some(key) = ctx.idempotency_key.as_deref() {
        complete(conn, key, &response.encode_to_vec()).await?;
    }
    Ok(())
}
