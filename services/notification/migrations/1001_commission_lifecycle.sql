-- Commissions now have a lifecycle after they are calculated (pending for the campaign's hold,
-- then approved, declined by the advertiser, or reversed by a refund), and the creator is told of
-- each step: three more kinds of notification. The check is replaced by a wider one (every
-- existing row passes it); the kinds are still listed here so that a typo in the service cannot
-- store a kind the API does not know.
alter table notifications drop constraint notifications_kind_check;

alter table notifications
    add constraint notifications_kind_check check (kind in (
        'campaign_created', 'campaign_status_changed', 'campaign_accepted', 'evidence_submitted',
        'commission_earned', 'payout_requested', 'payout_completed', 'payout_failed',
        'payout_rejected', 'commission_approved', 'commission_declined', 'commission_reversed'));
