//! The unit of work every command runs in, whichever door it came through: begin a transaction
//! (or a savepoint, inside a consumer's batch), claim the idempotency key or replay the response
//! stored under it, run the handler's body on the transaction, append the outbox messages the
//! body decided on, store the response under the key, commit. A handler's body only decides:
//! it reads and writes its own tables and returns a [`Decision`]; an error anywhere rolls back
//! everything, the claim included, so a retry runs again.

use std::collections::HashSet;

use prost::Message;
use sqlx::{Acquire, PgConnection, Postgres};

use crate::context::CommandContext;
use crate::errors::Error;
use crate::idempotency::{self, Claim, remember, replay};
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

/// Claims, in one statement, the idempotency keys of the commands of a set that carry one:
/// `keyed` lists `(position, key, encoded request)`. A command whose key ran before gets its
/// stored response (or `KeyReused`) in `outcomes`; a key given twice in one set is claimed for
/// its first command and the later one is answered `NotYet` (retried after the first). Returns
/// the keys claimed now, to be completed ([`complete_set`]) or given back.
pub async fn claim_keys<Resp: Message + Default>(
    conn: &mut PgConnection,
    operation: &str,
    keyed: Vec<(usize, &str, Vec<u8>)>,
    outcomes: &mut [Option<Result<Resp, Error>>],
) -> Result<HashSet<String>, Error> {
    let mut entries: Vec<(&str, Vec<u8>)> = Vec::with_capacity(keyed.len());
    let mut positions = Vec::with_capacity(keyed.len());
    let mut seen = HashSet::new();
    for (i, key, request) in keyed {
        if !seen.insert(key) {
            outcomes[i] = Some(Err(Error::NotYet(format!(
                "idempotency key `{key}` twice in one batch; retried after the first"
            ))));
            continue;
        }
        entries.push((key, request));
        positions.push(i);
    }
    let mut claimed = HashSet::new();
    if entries.is_empty() {
        return Ok(claimed);
    }
    let claims = idempotency::claim_set(conn, operation, &entries).await?;
    for ((i, (key, _)), claim) in positions.into_iter().zip(&entries).zip(claims) {
        match claim {
            Ok(Claim::Fresh) => {
                claimed.insert((*key).to_owned());
            }
            Ok(Claim::Replay(bytes)) => {
                outcomes[i] = Some(Resp::decode(bytes.as_slice()).map_err(|e| {
                    Error::Internal(anyhow::anyhow!("stored {operation} response: {e}"))
                }));
            }
            Err(e) => outcomes[i] = Some(Err(e.into())),
        }
    }
    Ok(claimed)
}

/// Ends the keys [`claim_keys`] claimed: the responses of the commands that succeeded are stored
/// under their keys in one statement; the keys of those that failed are given back (they wrote
/// nothing), so a retry runs them again.
pub async fn settle_keys<Resp: Message>(
    conn: &mut PgConnection,
    contexts: &[&CommandContext],
    outcomes: &[Option<Result<Resp, Error>>],
    claimed: &HashSet<String>,
) -> Result<(), Error> {
    let mut failed = Vec::new();
    let mut responses = Vec::new();
    // A key given twice belongs to its first command (the later one was answered `NotYet`).
    let mut owned = HashSet::new();
    for (ctx, outcome) in contexts.iter().zip(outcomes) {
        let Some(key) = ctx
            .idempotency_key
            .as_deref()
            .filter(|k| claimed.contains(*k))
        else {
            continue;
        };
        if !owned.insert(key) {
            continue;
        }
        match outcome {
            Some(Ok(response)) => responses.push((key, response.encode_to_vec())),
            _ => failed.push(key),
        }
    }
    idempotency::unclaim(conn, &failed).await?;
    idempotency::complete_set(conn, &responses).await?;
    Ok(())
}

/// Runs many commands of one operation as one unit of work on `conn`, inside the caller's open
/// transaction: [`execute`] for a set, in a handful of statements whatever its size. Keys are
/// claimed for the whole set ([`claim_keys`]); `body` decides the commands still to run (their
/// positions in `set`, in order) and returns one decision per position; every decided message
/// is appended in one statement and every response stored in one ([`settle_keys`]). A command
/// whose body failed has written nothing, so the others go on. `Err` only when the database
/// failed (the transaction is then unusable).
pub async fn execute_set<Req, Resp>(
    conn: &mut PgConnection,
    operation: &'static str,
    set: &[(CommandContext, Req)],
    body: impl AsyncFnOnce(
        &mut PgConnection,
        &[usize],
    ) -> Result<Vec<Result<Decision<Resp>, Error>>, Error>,
) -> Result<Vec<Result<Resp, Error>>, Error>
where
    Req: Message,
    Resp: Message + Default,
{
    let mut outcomes: Vec<Option<Result<Resp, Error>>> = set.iter().map(|_| None).collect();
    let keyed = set
        .iter()
        .enumerate()
        .filter_map(|(i, (ctx, request))| {
            Some((i, ctx.idempotency_key.as_deref()?, request.encode_to_vec()))
        })
        .collect();
    let claimed = claim_keys(conn, operation, keyed, &mut outcomes).await?;
    let run: Vec<usize> = (0..set.len()).filter(|i| outcomes[*i].is_none()).collect();
    let mut messages = Vec::new();
    if !run.is_empty() {
        let decided = body(&mut *conn, &run).await?;
        if decided.len() != run.len() {
            return Err(Error::Internal(anyhow::anyhow!(
                "{operation}: {} decisions for {} commands",
                decided.len(),
                run.len()
            )));
        }
        for (i, decision) in run.into_iter().zip(decided) {
            outcomes[i] = Some(decision.map(|d| {
                messages.extend(d.messages);
                d.response
            }));
        }
    }
    outbox::append_set(conn, &messages)
        .await
        .map_err(Error::Internal)?;
    let contexts: Vec<&CommandContext> = set.iter().map(|(ctx, _)| ctx).collect();
    settle_keys(conn, &contexts, &outcomes, &claimed).await?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(Error::Internal(anyhow::anyhow!("left undecided")))))
        .collect())
}
