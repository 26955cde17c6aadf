create or replace function private.refund_session(session public.sessions, user_id uuid, cause text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  s public.sessions%rowtype := refund_session.session;
  v_request jsonb;
  v_credits integer;
  v_entry bigint;
  v_refund jsonb;
begin
  if s.stripe_session_id is not null then
    v_request := public.enqueue_stripe_request(
      'refund', s.stripe_session_id,
      coalesce(s.metadata ->> 'payment_intent',
        (select e.payload #>> '{data,object,payment_intent}' from public.stripe_events e
         where e.checkout_session_id = s.stripe_session_id
           and e.payload #>> '{data,object,payment_intent}' is not null
         order by e.received_at desc limit 1)),
      s.id, 'session ' || refund_session.cause
    );
    v_refund := pg_catalog.jsonb_build_object(
      'method', 'stripe', 'status', 'requested', 'outbox_id', v_request -> 'id',
      'checkout_session_id', s.stripe_session_id, 'amount', s.metadata -> 'amount_paid'
    );
  elsif s.metadata ->> 'payment_method' = 'credits' then
    select -c.delta into v_credits
    from public.credit_entries c
    where c.session_id = s.id and c.reason = 'session';
    if v_credits is null then
      return;
    end if;
    insert into public.credit_entries (customer_user_id, delta, reason, session_id)
    values (s.customer_user_id, v_credits, 'refund', s.id)
    on conflict (session_id) where reason = 'refund' do nothing
    returning id into v_entry;
    if v_entry is null then
      return;
    end if;
    v_refund := pg_catalog.jsonb_build_object(
      'method', 'credits', 'status', 'credited', 'credits', v_credits, 'credit_entry_id', v_entry
    );
  else
    return;  -- free: nothing was paid
  end if;
  perform private.log_event(s.id, 'refunded', refund_session.user_id,
    v_refund || pg_catalog.jsonb_build_object('reason', refund_session.cause));
end;
$$;

comment on function private.refund_session(public.sessions, uuid, text) is
  'Gives back what a session cost, in the caller''s transaction: a Stripe-paid session gets a full '
  'refund request in stripe_outbox (key refund-<checkout id>, payment intent from the recorded '
  'webhook when known), a credits session a ledger entry returning the debit; either way a '
  'refunded event (method, status, outbox_id or credits) records it. Free sessions: nothing.';
