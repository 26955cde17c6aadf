-- The webhook inbox as one unit: every delivery is counted, the last failure is kept, and the
-- record and finish steps are one call each (record -> handle -> finish).
alter table public.stripe_events
  add column attempts integer not null default 0 check (attempts >= 0),
  add column last_error text check (char_length(last_error) <= 2000),
  add column last_attempt_at timestamptz;
comment on column public.stripe_events.attempts is
  'Deliveries (and replays) of this event that reached the handler.';
comment on column public.stripe_events.last_error is
  'Why the last attempt did not finish: a transient failure (status stays received) or a permanent one (failed).';
create index stripe_events_unfinished_idx on public.stripe_events (received_at) where status = 'received';

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
revoke all on function public.record_stripe_event(text, text, boolean, jsonb) from public, anon, authenticated;
grant execute on function public.record_stripe_event(text, text, boolean, jsonb) to service_role;
comment on function public.record_stripe_event(text, text, boolean, jsonb) is
  'Records a delivery of a Stripe event once per id and counts every attempt; answers the status '
  'the event is in, so a finished event is only acknowledged and an unfinished one is handled again.';

create or replace function public.finish_stripe_event(
  event_id text,
  status text,
  outcome jsonb default '{}',
  checkout_session_id text default null,
  session_id uuid default null,
  error text default null
) returns void
language sql
security definer
set search_path = ''
as $$
  update public.stripe_events e
  set status = finish_stripe_event.status,
      outcome = coalesce(finish_stripe_event.outcome, '{}'),
      checkout_session_id = coalesce(finish_stripe_event.checkout_session_id, e.checkout_session_id),
      session_id = coalesce(finish_stripe_event.session_id, e.session_id),
      last_error = pg_catalog.left(finish_stripe_event.error, 2000),
      handled_at = case when finish_stripe_event.status = 'received' then null else pg_catalog.now() end
  where e.id = event_id;
$$;
revoke all on function public.finish_stripe_event(text, text, jsonb, text, uuid, text)
  from public, anon, authenticated;
grant execute on function public.finish_stripe_event(text, text, jsonb, text, uuid, text) to service_role;
comment on function public.finish_stripe_event(text, text, jsonb, text, uuid, text) is
  'Ends one attempt at a Stripe event: its status and outcome, or (status received) the transient '
  'error that leaves it to be retried by Stripe or replayed by an operator.';
