create or replace function public.finish_stripe_request(
  id bigint,
  outcome text,
  stripe_object_id text default null,
  error text default null,
  retry_in interval default null,
  refund jsonb default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
  v_payment public.payments%rowtype;
  v_settled jsonb;
begin
  if outcome is null or outcome not in ('sent', 'failed', 'retry', 'cancelled') then
    perform private.raise_api_error(422, 'INVALID_OUTCOME', 'outcome must be sent, failed, retry or cancelled');
  end if;
  if retry_in is not null and (retry_in < interval '0' or retry_in > interval '7 days') then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'retry_in must be between 0 and 7 days');
  end if;

  select o.* into v_row from public.stripe_outbox o where o.id = finish_stripe_request.id;
  if not found then
    perform private.raise_api_error(404, 'REQUEST_NOT_FOUND', 'no such Stripe request');
  end if;
  if v_row.payment_id is not null then
    select p.customer_user_id into v_payment.customer_user_id from public.payments p where p.id = v_row.payment_id;
    perform private.lock_customer(v_payment.customer_user_id);
  end if;
  select o.* into v_row from public.stripe_outbox o where o.id = finish_stripe_request.id for update;
  if v_row.status <> 'pending' then
    -- A worker whose lease ran out reports what another worker already reported: that is done.
    return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', false);
  end if;

  update public.stripe_outbox o set
    status = case outcome when 'retry' then 'pending' else outcome end,
    sent_at = case when outcome = 'sent' then pg_catalog.now() end,
    stripe_object_id = coalesce(pg_catalog.left(finish_stripe_request.stripe_object_id, 255), o.stripe_object_id),
    last_error = case when outcome = 'sent' then o.last_error else pg_catalog.left(error, 2000) end,
    next_attempt_at = case when outcome = 'retry' then pg_catalog.now() + coalesce(
      retry_in, private.stripe_retry_delay(o.attempts)) else o.next_attempt_at end,
    locked_until = null,
    updated_at = pg_catalog.now()
  where o.id = finish_stripe_request.id
  returning o.* into v_row;

  if v_row.payment_id is not null and v_row.kind = 'refund' then
    if outcome = 'sent' and refund is not null then
      -- Stripe's answer is the refund's first status (often pending, sometimes already failed).
      perform public.record_charge_refund(
        coalesce(refund ->> 'id', v_row.stripe_object_id), refund ->> 'payment_intent',
        coalesce((refund ->> 'amount')::integer, v_row.amount), coalesce(refund ->> 'status', 'pending'),
        refund ->> 'failure_reason', v_row.payment_id);
    end if;
    v_settled := private.settle_payment(v_row.payment_id);
  elsif v_row.payment_id is not null and v_row.kind = 'expire_checkout' and outcome in ('sent', 'cancelled') then
    update public.payments p set status = 'expired'
    where p.id = v_row.payment_id and p.status in ('creating', 'open');
  end if;

  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', true, 'payment', v_settled);
end;
$$;
comment on function public.finish_stripe_request(bigint, text, text, text, interval, jsonb) is
  'Records what Stripe answered a request: sent (with Stripe''s object id; for a refund, the refund '
  'itself, whose status the payment then follows), failed (refused: kept with the reason, never '
  'retried; a refused refund leaves the payment refund_failed unless other refunds cover it), retry '
  '(transient: pending again after retry_in or the back-off of private.stripe_retry_delay) or '
  'cancelled (no longer needed). A request another worker already finished counts as done '
  '(changed false). service_role only.';
