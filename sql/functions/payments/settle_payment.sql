create or replace function private.settle_payment(payment_id uuid) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  p public.payments%rowtype;
  v_session public.sessions%rowtype;
  v_succeeded integer;
  v_in_flight integer;
  v_paid integer;
  v_waiting boolean;
  v_status text;
  v_cancelled boolean := false;
begin
  select x.* into p from public.payments x where x.id = settle_payment.payment_id for update;
  select coalesce(pg_catalog.sum(r.amount) filter (where r.status = 'succeeded'), 0),
         coalesce(pg_catalog.sum(r.amount) filter (where r.status in ('pending', 'requires_action')), 0)
  into v_succeeded, v_in_flight
  from public.refunds r
  where r.payment_id = p.id;
  v_paid := coalesce(p.amount_paid, p.amount);
  -- Is one of our refund requests still queued or being sent?
  v_waiting := exists (select 1 from public.stripe_outbox o
                       where o.payment_id = p.id and o.kind = 'refund' and o.status = 'pending');

  v_status := case
    when p.status not in ('paid', 'consumed', 'refund_requested', 'refunded', 'refund_failed') then p.status
    when v_succeeded >= v_paid then 'refunded'
    when v_succeeded + v_in_flight >= v_paid then 'refund_requested'
    -- refunded too: Stripe may fail a refund after reporting it succeeded.
    when p.status in ('refund_requested', 'refunded') and v_in_flight = 0 and not v_waiting then 'refund_failed'
    when p.status = 'refunded' then 'refund_requested'
    else p.status
  end;

  -- A full refund that did not come from a request of ours (the dashboard): the session it paid
  -- for ends, once, if it has not started; a started one was delivered and is left to the audit.
  if v_status in ('refunded', 'refund_requested') and p.status = 'consumed' then
    select s.* into v_session from public.sessions s where s.id = p.session_id for update;
    if v_session.status in ('pending', 'waiting') then
      update public.session_assignments a
      set status = 'cancelled'
      where a.session_id = v_session.id and a.status in ('queued', 'offered');
      perform private.move_session(v_session, 'cancelled', 'cancelled', null,
        pg_catalog.jsonb_build_object('reason', 'refunded in Stripe'));
      v_cancelled := true;
    end if;
  end if;
  if v_status = 'refunded' then
    -- The money is back: a request of ours not yet sent is no longer needed.
    update public.stripe_outbox o
    set status = 'cancelled', locked_until = null, updated_at = pg_catalog.now(),
        last_error = 'not needed: the payment is refunded in full'
    where o.payment_id = p.id and o.kind = 'refund' and o.status = 'pending'
      and (o.locked_until is null or o.locked_until <= pg_catalog.now());
  end if;

  update public.payments x
  set amount_refunded = least(v_succeeded, v_paid), status = v_status
  where x.id = p.id
    and (x.amount_refunded, x.status) is distinct from (least(v_succeeded, v_paid), v_status);

  -- The timeline says "refunded" once per session (the request's event, or this one for a refund
  -- made outside); how the refund ends is the payment's status, shown in the session view.
  if v_status is distinct from p.status and p.session_id is not null and v_status = 'refunded'
     and not exists (select 1 from public.session_events e
                     where e.session_id = p.session_id and e.event_type = 'refunded') then
    perform private.log_event(p.session_id, 'refunded', null, pg_catalog.jsonb_build_object(
      'method', 'stripe', 'status', v_status, 'amount_refunded', v_succeeded, 'payment_id', p.id));
  end if;

  return pg_catalog.jsonb_build_object(
    'payment_id', p.id, 'status', v_status, 'previous_status', p.status,
    'amount', v_paid, 'amount_refunded', v_succeeded, 'in_flight', v_in_flight,
    'session_id', p.session_id, 'session_cancelled', v_cancelled
  );
end;
$$;
comment on function private.settle_payment(uuid) is
  'Derives a payment''s refund state from its refunds (Stripe''s word): refunded when succeeded '
  'refunds cover what was paid, refund_requested while in-flight ones would, refund_failed when a '
  'requested refund ended without the money back and nothing of ours is still queued. A full '
  'refund made outside the service cancels the unstarted session it paid for, once; a refund of '
  'ours still queued is cancelled once the money is back. The caller holds the customer''s lock.';
