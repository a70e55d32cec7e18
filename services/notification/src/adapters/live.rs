//! Live subscriptions. One LISTEN connection per process hears `notifications` (the insert
//! trigger's NOTIFY, payload the user id, delivered at commit) and fans the user ids out to every
//! open Subscribe stream. Each stream always reads "the user's notifications after the last one
//! sent", on a wake-up for its user and on an interval besides (NOTIFYs are lost while the
//! listener reconnects), so nothing is lost or sent twice across the replay/live boundary.
//! Because a user's notifications commit in sequence order (see `repository::next_sequence`),
//! reading after the last sent never skips one that commits later.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use uuid::Uuid;

use affiliate_proto::notification::SubscribeResponse;

use crate::app::Notifications;

/// The NOTIFY channel the insert trigger uses.
pub const CHANNEL: &str = "notifications";
/// Notifications read per query.
const BATCH: i64 = 100;
/// Notifications buffered per stream before a slow client holds its reader back.
const STREAM_BUFFER: usize = 64;
/// Wake-ups buffered per stream; one that falls behind re-reads instead.
const WAKEUP_BUFFER: usize = 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The stream of one Subscribe call.
pub type Stream = ReceiverStream<Result<SubscribeResponse, Status>>;

/// The process's live notification streams.
#[derive(Debug, Clone)]
pub struct Live {
    wakeups: broadcast::Sender<Uuid>,
    notifications: Notifications,
    poll_interval: Duration,
    shutdown: CancellationToken,
}

impl Live {
    /// Streams stop on `shutdown`, and re-read every `poll_interval` whatever they hear.
    pub fn new(
        notifications: Notifications,
        poll_interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (wakeups, _) = broadcast::channel(WAKEUP_BUFFER);
        Self {
            wakeups,
            notifications,
            poll_interval,
            shutdown,
        }
    }

    /// Listens on [`CHANNEL`] until shutdown and wakes the streams of each user it hears of.
    /// A lost connection is re-made with back-off (the streams' interval covers the gap).
    pub async fn listen(self, pool: PgPool) -> anyhow::Result<()> {
        let mut delay = Duration::from_millis(100);
        while !self.shutdown.is_cancelled() {
            match self.listen_once(&pool).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        retry_in_ms = delay.as_millis() as u64,
                        "notification listener failed"
                    );
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!("notification listener stopped");
        Ok(())
    }

    async fn listen_once(&self, pool: &PgPool) -> anyhow::Result<()> {
        let mut listener = PgListener::connect_with(pool)
            .await
            .context("connect the notification listener")?;
        listener
            .listen(CHANNEL)
            .await
            .with_context(|| format!("LISTEN {CHANNEL}"))?;
        tracing::info!(channel = CHANNEL, "listening for new notifications");
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                heard = listener.recv() => {
                    let heard = heard.context("receive a notification")?;
                    if let Ok(user) = Uuid::parse_str(heard.payload()) {
                        // No open stream is not an error.
                        let _ = self.wakeups.send(user);
                    }
                }
            }
        }
    }

    /// The user's notifications after `after_sequence`, then each new one as it commits, until
    /// the client goes away or the server shuts down. A database failure ends the stream with
    /// UNAVAILABLE; the client resumes after the last sequence it saw.
    pub fn subscribe(&self, user: Uuid, after_sequence: i64) -> Stream {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        // Hear wake-ups before the first read, so none falls between the two.
        let wakeups = self.wakeups.subscribe();
        let live = self.clone();
        tokio::spawn(async move { live.feed(user, after_sequence, wakeups, tx).await });
        ReceiverStream::new(rx)
    }

    async fn feed(
        &self,
        user: Uuid,
        mut last: i64,
        mut wakeups: broadcast::Receiver<Uuid>,
        tx: mpsc::Sender<Result<SubscribeResponse, Status>>,
    ) {
        loop {
            // Send everything after the last one sent.
            loop {
                let batch = match self.notifications.after(user, last, BATCH).await {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let full = batch.len() as i64 == BATCH;
                for notification in batch {
                    last = notification.sequence;
                    let response = SubscribeResponse {
                        notification: Some(notification),
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return; // the client went away
                    }
                }
                if !full {
                    break;
                }
            }
            // Wait for a wake-up for this user, or the interval.
            let tick = tokio::time::sleep(self.poll_interval);
            tokio::pin!(tick);
            loop {
                tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    () = &mut tick => break,
                    woken = wakeups.recv() => match woken {
                        Ok(id) if id == user => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        }
    }
}
