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

/// Claims many keys for `operation` in one statement, each `(key, encoded request)`, on the
/// caller's transaction (a key held by a concurrent transaction waits for it, as in [`claim`]).
/// One answer per entry, in order: `Fresh`, `Replay` of the stored response, or `KeyReused`.
/// Keys must be distinct.
pub async fn claim_set(
    conn: &mut PgConnection,
    operation: &str,
    entries: &[(&str, Vec<u8>)],
) -> sqlx::Result<Vec<Result<Claim, IdempotencyError>>> {
    let keys: Vec<&str> = entries.iter().map(|(key, _)| *key).collect();
    let requests: Vec<&[u8]> = entries.iter().map(|(_, r)| r.as_slice()).collect();
    let fresh: std::collections::HashSet<String> = sqlx::query_scalar!(
        r#"
        insert into idempotency_keys (idempotency_key, operation, request)
        select * from unnest($1::text[], array_fill($2::text, array[cardinality($1::text[])]), $3::bytea[])
        on conflict (idempotency_key) do nothing
        returning idempotency_key
        "#,
        &keys as _,
        operation,
        &requests as _,
    )
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let seen: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|key| !fresh.contains(*key))
        .collect();
    let mut stored = std::collections::HashMap::new();
    if !seen.is_empty() {
        for row in sqlx::query!(
            r#"
            select idempotency_key, operation, request, response
            from idempotency_keys where idempotency_key = any($1)
            "#,
            &seen as _,
        )
        .fetch_all(&mut *conn)
        .await?
        {
            stored.insert(row.idempotency_key.clone(), row);
        }
    }
    Ok(entries
        .iter()
        .map(|(key, request)| {
            if fresh.contains(*key) {
                return Ok(Claim::Fresh);
            }
            match stored.get(*key) {
                Some(row) if row.operation == operation && row.request == *request => row
                    .response
                    .clone()
                    .map(Claim::Replay)
                    .ok_or_else(|| IdempotencyError::KeyReused((*key).to_owned())),
                _ => Err(IdempotencyError::KeyReused((*key).to_owned())),
            }
        })
        .collect())
}

/// Gives back keys claimed in this transaction whose command then failed (its writes are not
/// made), so a retry runs it again.
pub async fn unclaim(conn: &mut PgConnection, keys: &[&str]) -> sqlx::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "delete from idempotency_keys where idempotency_key = any($1) and response is null",
        keys as _,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Stores the encoded responses of fresh keys in one statement, each `(key, response)`.
pub async fn complete_set(
    conn: &mut PgConnection,
    entries: &[(&str, Vec<u8>)],
) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = entries.iter().map(|(key, _)| *key).collect();
    let responses: Vec<&[u8]> = entries.iter().map(|(_, r)| r.as_slice()).collect();
    sqlx::query!(
        r#"
        update idempotency_keys k set response = m.response
        from unnest($1::text[], $2::bytea[]) as m(idempotency_key, response)
        where k.idempotency_key = m.idempotency_key
        "#,
        &keys as _,
        &responses as _,
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
