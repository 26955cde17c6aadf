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

comment on function public.finish_stripe_event(text, text, jsonb, text, uuid, text) is
  'Ends one attempt at a Stripe event: its status and outcome, or (status received) the transient '
  'error that leaves it to be retried by Stripe or replayed by an operator.';
