//! The gRPC door of the notification service: list, mark read, and the live Subscribe stream;
//! handler errors become statuses through `service_runtime::errors` (the one mapping).

use tonic::{Request, Response, Status};

use affiliate_proto::notification::notification_service_server::NotificationService;
use affiliate_proto::notification::{self as pb};

use crate::adapters::live::{self, Live};
use crate::app::Notifications;

#[derive(Debug, Clone)]
pub struct NotificationApi {
    notifications: Notifications,
    live: Live,
}

impl NotificationApi {
    pub fn new(notifications: Notifications, live: Live) -> Self {
        Self {
            notifications,
            live,
        }
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        Ok(Response::new(
            self.notifications.list(request.into_inner()).await?,
        ))
    }

    async fn mark_read(
        &self,
        request: Request<pb::MarkReadRequest>,
    ) -> Result<Response<pb::MarkReadResponse>, Status> {
        Ok(Response::new(
            self.notifications.mark_read(request.into_inner()).await?,
        ))
    }

    type SubscribeStream = live::Stream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let (user, after) = Notifications::subscription(request.get_ref())?;
        Ok(Response::new(self.live.subscribe(user, after)))
    }
}
