//! The `commission-commands` door: calculate (sent by tracking), reserve, release and settle (sent
//! by the payout saga), run by the same handlers as the gRPC calls with the message id as the
//! idempotency key. A calculate for a campaign not known yet is retried, never rejected.

use sqlx::{Acquire, PgConnection, Postgres};
use uuid::Uuid;

use affiliate_proto::commission::{
    CommissionCommand, CommissionEvent, commission_command::Command,
};
use messaging::door::CommandDoor;
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;

use crate::app::Commissions;

#[derive(Debug, Clone)]
pub struct CommissionDoor(pub Commissions);

/// Runs a command on `db`: the pool (a transaction of its own) or a batch's connection.
async fn run_on<'c>(
    c: &Commissions,
    db: impl Acquire<'c, Database = Postgres>,
    ctx: &CommandContext,
    command: Command,
) -> Result<(), Error> {
    match command {
        Command::Calculate(r) => c.calculate_on(db, ctx, r).await.map(drop),
        Command::Reserve(r) => c.reserve_on(db, ctx, r).await.map(drop),
        Command::Release(r) => c.release_on(db, ctx, r).await.map(drop),
        Command::Settle(r) => c.settle_on(db, ctx, r).await.map(drop),
    }
}

impl CommandDoor for CommissionDoor {
    type Envelope = CommissionCommand;
    type Events = CommissionEvent;

    fn target(&self, command: &Command) -> Option<Uuid> {
        let id = match command {
            Command::Calculate(r) => &r.tracking_event_id,
            Command::Reserve(r) => &r.payout_id,
            Command::Release(r) => &r.payout_id,
            Command::Settle(r) => &r.payout_id,
        };
        Uuid::parse_str(id).ok()
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        run_on(&self.0, self.0.pool(), ctx, command).await
    }

    fn batched(&self) -> bool {
        true
    }

    async fn run_in(
        &self,
        conn: &mut PgConnection,
        ctx: &CommandContext,
        command: Command,
    ) -> Result<(), Error> {
        run_on(&self.0, conn, ctx, command).await
    }

    /// A calculation locks its campaign's terms, then its creator's balance. Commands are applied
    /// in creator order, so a batch first locks every campaign it touches, in campaign order:
    /// otherwise two batches holding campaign A and balance 1, and wanting balance 1 and
    /// campaign A, would deadlock (seen on a few hot campaigns: hundreds of `deadlock detected`
    /// and lock waits of tens of seconds).
    async fn lock_batch(
        &self,
        conn: &mut PgConnection,
        commands: Vec<Command>,
    ) -> Result<(), Error> {
        let mut campaigns: Vec<Uuid> = commands
            .iter()
            .filter_map(|command| match command {
                Command::Calculate(r) => Uuid::parse_str(&r.campaign_id).ok(),
                _ => None,
            })
            .collect();
        campaigns.sort_unstable();
        campaigns.dedup();
        if !campaigns.is_empty() {
            crate::adapters::repository::lock_campaigns(conn, &campaigns).await?;
        }
        Ok(())
    }

    /// Calculate and reserve lock the creator's balance row: batches take them in creator order.
    fn lock_key(&self, command: &Command) -> Option<String> {
        match command {
            Command::Calculate(r) => Some(r.creator_id.clone()),
            Command::Reserve(r) => Some(r.creator_id.clone()),
            Command::Release(_) | Command::Settle(_) => None,
        }
    }
}
