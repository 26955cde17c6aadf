create or replace function public.claim_stripe_requests(
  max_requests integer default 10,
  lease interval default '60 seconds'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_claimed jsonb;
begin
  if max_requests is null or max_requests not between 1 and 1000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_requests must be between 1 and 1000');
  end if;
  if lease is null or lease <= interval '0' or lease > interval '1 hour' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'lease must be positive and at most 1 hour');
  end if;

  -- skip locked: concurrent claimers pass over each other's rows instead of waiting for them.
  with due as (
    select o.id
    from public.stripe_outbox o
    where o.status = 'pending'
      and o.next_attempt_at <= pg_catalog.now()
      and (o.locked_until is null or o.locked_until <= pg_catalog.now())
    order by o.next_attempt_at, o.id
    limit max_requests
    for update skip locked
  ), claimed as (
    update public.stripe_outbox o set
      locked_until = pg_catalog.now() + lease,
      attempts = o.attempts + 1,
      updated_at = pg_catalog.now()
    from due
    where o.id = due.id
    returning o.*
  )
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(c) order by c.id), '[]'::jsonb)
  into v_claimed
  from claimed c;
  return v_claimed;
end;
$$;

comment on function public.claim_stripe_requests(integer, interval) is
  'The worker''s claim: up to max_requests due, unleased pending requests, leased for `lease` and '
  'counted as an attempt. for update skip locked, so concurrent workers never claim the same row '
  'and never wait for each other; a crashed worker''s rows come back when the lease ends. '
  'service_role only.';
