//! The `commission-commands` door: calculate (sent by tracking), reserve, release and settle (sent
//! by the payout saga), run by the same handlers as the gRPC calls with the message id as the
//! idempotency key; a batch's calculations as one set. A calculate for a campaign not known yet
//! is retried, never rejected.

use sqlx::{Acquire, PgConnection, Postgres};
use tracing::Instrument as _;
use uuid::Uuid;

use affiliate_proto::commission::{
    CommissionCommand, CommissionEvent, commission_command::Command,
};
use messaging::door::CommandDoor;
use service_runtime::context::CommandContext;
use service_runtime::errors::Error;

use affiliate_proto::common::Money;

use crate::adapters::repository as repo;
use crate::app::calculate::calculate_set;
use crate::app::{Calculation, Commissions};

#[derive(Debug, Clone)]
pub struct CommissionDoor(pub Commissions);

/// Runs a command on `db`: the pool (a transaction of its own) or a batch's connection (a
/// savepoint in it).
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
        Command::Approve(r) => c.approve_on(db, ctx, r).await.map(drop),
        Command::Decline(r) => c.decline_on(db, ctx, r).await.map(drop),
        Command::Reverse(r) => c.reverse_on(db, ctx, r).await.map(drop),
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
            Command::Approve(r) => r.commission_ids.first()?,
            Command::Decline(r) => r.commission_ids.first()?,
            Command::Reverse(r) => &r.tracking_event_id,
        };
        Uuid::parse_str(id).ok()
    }

    async fn run(&self, ctx: &CommandContext, command: Command) -> Result<(), Error> {
        run_on(&self.0, self.0.pool(), ctx, command).await
    }

    fn runs_sets(&self) -> bool {
        true
    }

    /// Calculations as one set ([`calculate_set`]); the others (a payout's reserve, release and
    /// settle, approvals, declines, refunds) one by one, each in a savepoint (they are few). A
    /// batch with other commands first locks every campaign it calculates for or its commands'
    /// commissions belong to, then every balance it touches, each in ascending order, the order a
    /// set of calculations takes them in alone: two batches never deadlock.
    async fn run_set(
        &self,
        conn: &mut PgConnection,
        commands: Vec<(CommandContext, Command)>,
    ) -> Result<Vec<Result<(), Error>>, Error> {
        let mut calculations = Vec::new();
        let mut others = Vec::new();
        for (i, (ctx, command)) in commands.into_iter().enumerate() {
            match command {
                Command::Calculate(request) => calculations.push((i, Calculation { ctx, request })),
                other => others.push((i, ctx, other)),
            }
        }
        if !others.is_empty() {
            lock_first(conn, &calculations, &others).await?;
        }
        let mut outcomes: Vec<Option<Result<(), Error>>> = (0..calculations.len() + others.len())
            .map(|_| None)
            .collect();
        let (positions, set): (Vec<usize>, Vec<Calculation>) = calculations.into_iter().unzip();
        if !set.is_empty() {
            for (i, result) in positions.into_iter().zip(calculate_set(conn, &set).await?) {
                outcomes[i] = Some(result.map(drop));
            }
        }
        for (i, ctx, command) in others {
            // Its own span, the child of its message's processing (a set has none of its own).
            let span = tracing::info_span!("commission.command", otel.kind = "internal");
            service_runtime::telemetry::set_remote_parent(
                &span,
                ctx.traceparent.as_deref(),
                ctx.tracestate.as_deref(),
            );
            let outcome = run_on(&self.0, &mut *conn, &ctx, command)
                .instrument(span)
                .await;
            outcomes[i] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::Internal(anyhow::anyhow!("no outcome")))))
            .collect())
    }
}

/// Locks, in the global order, what a batch with payout commands touches: the campaigns of its
/// calculations, then the balances of its calculations, reservations and payouts' reservations.
async fn lock_first(
    conn: &mut PgConnection,
    calculations: &[(usize, Calculation)],
    others: &[(usize, CommandContext, Command)],
) -> Result<(), Error> {
    let mut campaigns: Vec<Uuid> = calculations
        .iter()
        .filter_map(|(_, c)| Uuid::parse_str(&c.request.campaign_id).ok())
        .collect();
    let owner = |creator: &str, money: Option<&Money>| {
        Some((Uuid::parse_str(creator).ok()?, money?.currency.clone()))
    };
    let mut balances: Vec<(Uuid, String)> = calculations
        .iter()
        .filter_map(|(_, c)| owner(&c.request.creator_id, c.request.purchase_amount.as_ref()))
        .collect();
    let mut payouts = Vec::new();
    let (mut commissions, mut purchases) = (Vec::new(), Vec::new());
    let ids = |ids: &[String]| {
        ids.iter()
            .filter_map(|id| Uuid::parse_str(id).ok())
            .collect::<Vec<_>>()
    };
    for (_, _, command) in others {
        match command {
            Command::Reserve(r) => balances.extend(owner(&r.creator_id, r.amount.as_ref())),
            Command::Release(r) => payouts.extend(Uuid::parse_str(&r.payout_id).ok()),
            Command::Settle(r) => payouts.extend(Uuid::parse_str(&r.payout_id).ok()),
            Command::Approve(r) => commissions.extend(ids(&r.commission_ids)),
            Command::Decline(r) => commissions.extend(ids(&r.commission_ids)),
            Command::Reverse(r) => purchases.extend(Uuid::parse_str(&r.tracking_event_id).ok()),
            Command::Calculate(_) => {}
        }
    }
    for (campaign, creator, currency) in
        repo::commission_owners(conn, &commissions, &purchases).await?
    {
        campaigns.push(campaign);
        balances.push((creator, currency));
    }
    campaigns.sort_unstable();
    campaigns.dedup();
    repo::lock_terms(conn, &campaigns).await?;
    balances.extend(repo::reservation_owners(conn, &payouts).await?);
    repo::lock_balances(conn, &balances).await?;
    Ok(())
}
