create or replace function private.consume_payment(
  customer_id uuid,
  plan text,
  intake_id uuid,
  stripe_session_id text,
  payment_id uuid,
  amount_paid integer,
  currency text,
  payment_intent text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
  v_plan public.plans%rowtype;
  v_intake public.intakes%rowtype;
  v_preferred uuid;
  v_routing text;
  v_result jsonb;
  v_error jsonb;
  v_refund jsonb;
begin
  v_payment := private.lock_payment(stripe_session_id, payment_id);
  if v_payment.id is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'this service did not open that Checkout');
  end if;
  if v_payment.customer_user_id <> customer_id or v_payment.intake_id <> intake_id
     or v_payment.plan <> consume_payment.plan
     or v_payment.checkout_session_id <> stripe_session_id then
    perform private.raise_api_error(409, 'STRIPE_SESSION_MISMATCH',
      'this checkout session already paid for another intake');
  end if;

  -- Stripe's word (the caller verified it) that the money was taken: recorded first, whatever follows.
  if v_payment.status in ('creating', 'open', 'processing', 'expired', 'payment_failed') then
    update public.payments p set
      status = 'paid', paid_at = pg_catalog.now(),
      checkout_session_id = consume_payment.stripe_session_id,
      payment_intent = coalesce(p.payment_intent, pg_catalog.left(consume_payment.payment_intent, 255)),
      amount_paid = consume_payment.amount_paid
    where p.id = v_payment.id
    returning * into v_payment;
  end if;
  if v_payment.status = 'consumed' then
    return (select pg_catalog.jsonb_build_object(
      'session_id', s.id, 'session_type', s.type, 'status', s.status, 'created', false,
      'payment_id', v_payment.id, 'payment_status', v_payment.status)
      from public.sessions s where s.id = v_payment.session_id);
  end if;
  if v_payment.status <> 'paid' then
    -- Refunded, or on its way back: this money can never buy a session again.
    return pg_catalog.jsonb_build_object(
      'session_id', null, 'created', false, 'refunded', true,
      'payment_id', v_payment.id, 'payment_status', v_payment.status, 'reason', v_payment.refund_reason);
  end if;

  -- Paid and unused: a session, or (for any reason it cannot be one) a full refund, never neither.
  begin
    if v_payment.amount_paid is distinct from v_payment.amount
       or pg_catalog.lower(consume_payment.currency) is distinct from v_payment.currency then
      perform private.raise_api_error(422, 'AMOUNT_MISMATCH',
        pg_catalog.format('the checkout was for %s %s', v_payment.amount, v_payment.currency));
    end if;
    -- The price snapshot is honoured: the plan as it was sold, even if since deactivated or repriced.
    select p.* into v_plan from public.plans p where p.code = v_payment.plan;
    select i.* into v_intake from public.intakes i where i.id = v_payment.intake_id;
    -- A preferred mechanic who has left since: the session is offered to everyone instead.
    v_preferred := v_intake.preferred_mechanic_id;
    v_routing := v_intake.routing_type;
    if v_preferred is not null and not exists (
      select 1 from public.mechanics m where m.user_id = v_preferred and m.active
    ) then
      v_preferred := null;
      v_routing := 'broadcast';
    end if;
    v_result := private.write_session(
      v_payment.customer_user_id, v_plan, v_payment.intake_id, 'stripe', v_payment.checkout_session_id,
      v_payment.amount_paid, v_intake.urgent, v_intake.is_specialist, v_preferred, v_routing, null, v_payment.id);
  exception when sqlstate 'PGRST' then
    v_error := sqlerrm::jsonb;
  end;

  if v_error is not null then
    v_refund := private.request_refund(v_payment, v_error ->> 'code');
    return pg_catalog.jsonb_build_object(
      'session_id', null, 'created', false, 'refunded', true,
      'payment_id', v_payment.id, 'payment_status', 'refund_requested',
      'reason', v_error ->> 'code', 'details', (v_error ->> 'details')::jsonb,
      'refund', v_refund);
  end if;
  update public.payments p
  set status = 'consumed', session_id = (v_result ->> 'session_id')::uuid
  where p.id = v_payment.id;
  return v_result || pg_catalog.jsonb_build_object('payment_id', v_payment.id, 'payment_status', 'consumed');
end;
$$;
comment on function private.consume_payment(uuid, text, uuid, text, uuid, integer, text, text) is
  'create_session_record''s paid path, under the customer''s lock: records that Stripe took the money '
  '(paid), then turns a paid payment into exactly one session (consumed) or, when the session cannot '
  'be made for any reason (another active session, a used intake, an amount that does not match the '
  'snapshot), requests its full refund in the same transaction. A consumed payment answers its '
  'session; a refunded one answers refunded and creates nothing. The plan snapshot is honoured even '
  'if the plan was since deactivated or repriced; an inactive preferred mechanic means broadcast.';
