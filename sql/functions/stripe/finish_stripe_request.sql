create or replace function public.finish_stripe_request(
  id bigint,
  outcome text,
  stripe_object_id text default null,
  error text default null,
  retry_in interval default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
begin
  if outcome is null or outcome not in ('sent', 'failed', 'retry') then
    perform private.raise_api_error(422, 'INVALID_OUTCOME', 'outcome must be sent, failed or retry');
  end if;
  if retry_in is not null and (retry_in < interval '0' or retry_in > interval '7 days') then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'retry_in must be between 0 and 7 days');
  end if;

  select o.* into v_row from public.stripe_outbox o where o.id = finish_stripe_request.id for update;
  if not found then
    perform private.raise_api_error(404, 'REQUEST_NOT_FOUND', 'no such Stripe request');
  end if;
  if v_row.status <> 'pending' then
    -- A worker whose lease ran out may report what another worker already reported.
    if v_row.status = 'sent' and outcome = 'sent' then
      return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', false);
    end if;
    perform private.raise_api_error(409, 'REQUEST_ALREADY_FINISHED',
      pg_catalog.format('this request is already %s', v_row.status),
      pg_catalog.jsonb_build_object('status', v_row.status));
  end if;

  update public.stripe_outbox o set
    status = case outcome when 'retry' then 'pending' else outcome end,
    sent_at = case when outcome = 'sent' then pg_catalog.now() end,
    stripe_object_id = coalesce(pg_catalog.left(finish_stripe_request.stripe_object_id, 255), o.stripe_object_id),
    last_error = case when outcome = 'sent' then o.last_error else pg_catalog.left(error, 2000) end,
    -- Back-off when the worker does not say: 30 s, 1 min, 2 min, ... at most 1 hour.
    next_attempt_at = case when outcome = 'retry' then pg_catalog.now() + coalesce(
      retry_in,
      least(interval '30 seconds' * pg_catalog.power(2, greatest(o.attempts - 1, 0)),
                       interval '1 hour')
    ) else o.next_attempt_at end,
    locked_until = null,
    updated_at = pg_catalog.now()
  where o.id = finish_stripe_request.id
  returning o.* into v_row;

  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', true);
end;
$$;

comment on function public.finish_stripe_request(bigint, text, text, text, interval) is
  'Records what Stripe answered: sent (with Stripe''s object id), failed (refused; kept with the '
  'reason and never retried) or retry (transient; pending again after retry_in, or an exponential '
  'back-off when null). Reporting sent twice is harmless. service_role only.';
