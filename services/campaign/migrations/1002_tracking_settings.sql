-- A campaign's tracking settings: where its tracking links send visitors (the landing URL, the
-- hosts a deep link may point at, the query parameter that carries the click id, the page shown
-- when the link is off) and how clicks turn into conversions (the attribution window, and the
-- shortest click-to-conversion time not held as suspected fraud). A campaign has none until its
-- advertiser sets a landing URL, so the columns are null as a group; the fallback URL stays
-- optional inside the group. The handlers store them validated and normalized (defaults filled
-- in, domains lower-cased and sorted); the checks here are the backstop, not the rules' source.
-- Durations are whole seconds.
alter table campaigns
    add column landing_url                  text
        check (octet_length(landing_url) <= 2048 and landing_url ~* '^https?://'),
    add column landing_domains              text[]
        check (cardinality(landing_domains) <= 20 and array_position(landing_domains, null) is null),
    add column click_id_param               text
        check (click_id_param ~ '^[A-Za-z0-9_-]{1,64}$'),
    add column attribution_window_secs      bigint
        check (attribution_window_secs between 1 and 400 * 86400),
    add column min_click_to_conversion_secs bigint
        check (min_click_to_conversion_secs between 0 and 86400),
    add column fallback_url                 text
        check (octet_length(fallback_url) <= 2048 and fallback_url ~* '^https?://');

alter table campaigns
    add constraint campaigns_tracking_settings_check check (
        num_nulls(landing_url, landing_domains, click_id_param, attribution_window_secs,
                  min_click_to_conversion_secs) in (0, 5)
        and (fallback_url is null or landing_url is not null)
    );
