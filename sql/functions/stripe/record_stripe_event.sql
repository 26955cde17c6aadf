create or replace function public.record_stripe_event(
  event_id text,
  event_type text,
  livemode boolean,
  payload jsonb
) returns jsonb
language sql
security definer
set search_path = ''
as $$
  insert into public.stripe_events as e (id, type, livemode, payload, attempts, last_attempt_at)
  values (event_id, event_type, coalesce(livemode, false), payload, 1, pg_catalog.now())
  on conflict (id) do update
    set attempts = e.attempts + 1, last_attempt_at = pg_catalog.now()
  returning pg_catalog.jsonb_build_object('status', e.status, 'attempts', e.attempts);
$$;

comment on function public.record_stripe_event(text, text, boolean, jsonb) is
  'Records a delivery of a Stripe event once per id and counts every attempt; answers the status '
  'the event is in, so a finished event is only acknowledged and an unfinished one is handled again.';
