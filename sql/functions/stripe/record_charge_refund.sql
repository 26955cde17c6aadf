create or replace function public.record_charge_refund(
  payment_intent text,
  amount integer,
  amount_refunded integer,
  refund_id text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
  v_full boolean := amount_refunded >= amount;
  v_cancelled boolean := false;
begin
  if payment_intent is null or amount is null or amount_refunded is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'payment_intent, amount and amount_refunded are required');
  end if;
  v_session := private.lock_paid_session(payment_intent);
  if v_session.id is null then
    return pg_catalog.jsonb_build_object('session_id', null, 'cancelled', false);
  end if;

  -- The money is already back: the checkout's refund is done, whether or not ours was queued, so
  -- nothing sends another (a queued or refused one of ours is marked sent with Stripe's refund).
  if v_full then
    insert into public.stripe_outbox as o
      (kind, checkout_session_id, session_id, payment_intent, reason, status, sent_at, stripe_object_id)
    values ('refund', v_session.stripe_session_id, v_session.id, record_charge_refund.payment_intent,
            'refunded in Stripe', 'sent', pg_catalog.now(), pg_catalog.left(refund_id, 255))
    on conflict (idempotency_key) do update
      set status = 'sent', sent_at = pg_catalog.now(), locked_until = null, last_error = null,
          stripe_object_id = coalesce(o.stripe_object_id, excluded.stripe_object_id), updated_at = pg_catalog.now()
      where o.status <> 'sent';
  end if;

  if v_full and v_session.status in ('pending', 'waiting')
     and not exists (select 1 from public.session_events e
                     where e.session_id = v_session.id and e.event_type = 'refunded') then
    update public.session_assignments a
    set status = 'cancelled'
    where a.session_id = v_session.id and a.status in ('queued', 'offered');
    perform private.move_session(v_session, 'cancelled', 'cancelled', null,
      pg_catalog.jsonb_build_object('reason', 'refunded in Stripe'));
    v_cancelled := true;
  end if;
  if not exists (select 1 from public.session_events e
                 where e.session_id = v_session.id and e.event_type = 'refunded'
                   and e.metadata ->> 'refund_id' is not distinct from refund_id) then
    perform private.log_event(v_session.id, 'refunded', null, pg_catalog.jsonb_build_object(
      'method', 'stripe', 'status', 'refunded_in_stripe', 'refund_id', refund_id,
      'amount_refunded', amount_refunded, 'full', v_full));
  end if;
  return pg_catalog.jsonb_build_object('session_id', v_session.id, 'cancelled', v_cancelled, 'full', v_full);
end;
$$;

comment on function public.record_charge_refund(text, integer, integer, text) is
  'A refund Stripe reports (charge.refunded), whoever made it. A full refund of a session that has '
  'not started cancels it without sending a second refund (the checkout''s refund is recorded as '
  'sent); a partial refund, or one of a live or ended session, is only recorded as a refunded event. '
  'Idempotent per refund id: Stripe delivers events more than once.';
