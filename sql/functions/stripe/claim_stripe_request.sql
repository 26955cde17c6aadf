create or replace function public.claim_stripe_request(
  request_id bigint,
  lease interval default '5 minutes'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
begin
  if request_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'request_id is required');
  end if;
  if lease is null or lease <= interval '0' or lease > interval '1 hour' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'lease must be positive and at most 1 hour');
  end if;
  update public.stripe_outbox o set
    locked_until = pg_catalog.now() + lease,
    attempts = o.attempts + 1,
    updated_at = pg_catalog.now()
  where o.id = (
    select d.id from public.stripe_outbox d
    where d.id = claim_stripe_request.request_id
      and d.status = 'pending'
      and d.next_attempt_at <= pg_catalog.now()
      and (d.locked_until is null or d.locked_until <= pg_catalog.now())
    for update skip locked
  )
  returning o.* into v_row;
  if not found then
    return null;  -- not due, or another worker has it
  end if;
  return pg_catalog.to_jsonb(v_row);
end;
$$;
comment on function public.claim_stripe_request(bigint, interval) is
  'Claims one Stripe request by id, as claim_stripe_requests claims many: so the request that '
  'decided a refund (a webhook delivery) sends its own row at once and never waits on other '
  'customers'' Stripe calls. null when the row is not due or another worker holds it. service_role only.';
