-- The webhook service disables a partner's endpoint that answers 410 Gone or whose messages fail
-- too many times in a row, and publishes webhook.endpoint_disabled.v1; the endpoint's owner (an
-- advertiser or a creator) is told, with the reason and how to enable it again: one more kind of
-- notification. As in 1001, the check is replaced by a wider one (every existing row passes it),
-- still listing the kinds so that a typo in the service cannot store a kind the API does not know.
alter table notifications drop constraint notifications_kind_check;

alter table notifications
    add constraint notifications_kind_check check (kind in (
        'campaign_created', 'campaign_status_changed', 'campaign_accepted', 'evidence_submitted',
        'commission_earned', 'payout_requested', 'payout_completed', 'payout_failed',
        'payout_rejected', 'commission_approved', 'commission_declined', 'commission_reversed',
        'webhook_endpoint_disabled'));
