create or replace function public.record_charge_refund(
  refund_id text,
  payment_intent text,
  amount integer,
  status text,
  failure_reason text default null,
  payment_id uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
  v_ours boolean;
begin
  if refund_id is null or amount is null or status is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'refund_id, amount and status are required');
  end if;
  if refund_id !~ '^(re|pyr)_[A-Za-z0-9_]{1,250}$' or amount <= 0
     or status not in ('pending', 'requires_action', 'succeeded', 'failed', 'canceled') then
    perform private.raise_api_error(422, 'INVALID_REFUND', 'not a Stripe refund (re_..., amount > 0, a known status)');
  end if;

  select p.* into v_payment
  from public.payments p
  where (record_charge_refund.payment_intent is not null and p.payment_intent = record_charge_refund.payment_intent)
     or (record_charge_refund.payment_id is not null and p.id = record_charge_refund.payment_id)
  limit 1;
  if not found then
    return pg_catalog.jsonb_build_object('payment_id', null, 'recorded', false);
  end if;
  perform private.lock_customer(v_payment.customer_user_id);

  v_ours := exists (select 1 from public.stripe_outbox o
                    where o.payment_id = v_payment.id and o.kind = 'refund'
                      and o.stripe_object_id = record_charge_refund.refund_id)
            or record_charge_refund.payment_id is not null;
  insert into public.refunds as r (payment_id, stripe_refund_id, amount, status, origin, failure_reason)
  values (v_payment.id, refund_id, amount, status, case when v_ours then 'service' else 'outside' end,
          pg_catalog.left(failure_reason, 200))
  on conflict (stripe_refund_id) do update
    -- A refund only moves forward (pending, requires_action, succeeded, then failed or canceled),
    -- whatever order its events arrive in: a late "pending" never undoes "succeeded" or "failed".
    set status = case
          when pg_catalog.array_position(array['pending', 'requires_action', 'succeeded', 'failed', 'canceled'],
                                         excluded.status)
               > pg_catalog.array_position(array['pending', 'requires_action', 'succeeded', 'failed', 'canceled'],
                                           r.status)
          then excluded.status else r.status end,
        failure_reason = coalesce(excluded.failure_reason, r.failure_reason),
        origin = case when excluded.origin = 'service' then 'service' else r.origin end,
        updated_at = pg_catalog.now();

  return private.settle_payment(v_payment.id) || pg_catalog.jsonb_build_object('recorded', true);
end;
$$;
comment on function public.record_charge_refund(text, text, integer, text, text, uuid) is
  'What Stripe says of one refund (the create answer, refund.created/updated/failed, or a listing '
  'after charge.refunded): kept by its re_ id, moving only forward (a late "pending" never undoes '
  '"failed"), then the payment settled from all its refunds. Refunds of charges this service did '
  'not sell are ignored. Idempotent; service_role only.';
