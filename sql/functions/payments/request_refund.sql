create or replace function private.request_refund(payment public.payments, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  p public.payments%rowtype := request_refund.payment;
  v_in_flight integer;
  v_amount integer;
  v_earlier integer;
  v_key text;
  v_request public.stripe_outbox%rowtype;
begin
  if p.status not in ('paid', 'consumed', 'refund_failed') then
    return null;  -- nothing to give back, or already on its way
  end if;
  select coalesce(pg_catalog.sum(r.amount) filter (where r.status in ('pending', 'requires_action')), 0)
  into v_in_flight
  from public.refunds r
  where r.payment_id = p.id;
  v_amount := coalesce(p.amount_paid, p.amount) - p.amount_refunded - v_in_flight;
  update public.payments x
  set status = 'refund_requested', refund_reason = pg_catalog.left(request_refund.reason, 500)
  where x.id = p.id;
  if v_amount <= 0 then
    return null;  -- outside refunds already cover it; their events settle the payment
  end if;
  -- One key per request: a retry after refund_failed is a new request, so it gets a new key.
  select pg_catalog.count(*) into v_earlier
  from public.stripe_outbox o
  where o.payment_id = p.id and o.kind = 'refund';
  v_key := 'refund-' || p.checkout_session_id
    || case when v_earlier > 0 then '-' || (v_earlier + 1)::text else '' end;
  insert into public.stripe_outbox (kind, checkout_session_id, payment_id, session_id, payment_intent,
                                    amount, reason, idempotency_key, params)
  values ('refund', p.checkout_session_id, p.id, p.session_id, p.payment_intent, v_amount,
          pg_catalog.left(request_refund.reason, 500), v_key,
          pg_catalog.jsonb_build_object(
            'payment_intent', p.payment_intent,
            'amount', v_amount,
            'reason', 'requested_by_customer',
            'metadata', pg_catalog.jsonb_build_object(
              'payment_id', p.id::text,
              'checkout_session_id', p.checkout_session_id,
              'reason', pg_catalog.left(request_refund.reason, 450)
            )
          ))
  returning * into v_request;
  return pg_catalog.jsonb_build_object(
    'outbox_id', v_request.id, 'amount', v_amount, 'currency', p.currency,
    'idempotency_key', v_key, 'payment_id', p.id
  );
end;
$$;
comment on function private.request_refund(public.payments, text) is
  'Gives a payment''s money back, in the caller''s transaction: the payment becomes refund_requested '
  'and a refund of what is not yet refunded (or on its way) is written to stripe_outbox with its '
  'exact parameters and its own key. Only from paid, consumed or refund_failed; anything else '
  'answers null and changes nothing, so asking twice refunds once. The caller holds the customer''s lock.';
