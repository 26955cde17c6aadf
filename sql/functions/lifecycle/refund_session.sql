create or replace function private.refund_session(session public.sessions, user_id uuid, cause text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  s public.sessions%rowtype := refund_session.session;
  v_payment public.payments%rowtype;
  v_request jsonb;
  v_credits integer;
  v_entry bigint;
  v_refund jsonb;
begin
  if s.payment_method = 'stripe' then
    select p.* into v_payment from public.payments p where p.session_id = s.id for update;
    v_request := private.request_refund(v_payment, 'session ' || refund_session.cause);
    if v_request is null then
      return;  -- already refunded or on its way back
    end if;
    v_refund := pg_catalog.jsonb_build_object(
      'method', 'stripe', 'status', 'requested', 'outbox_id', v_request -> 'outbox_id',
      'payment_id', v_payment.id, 'checkout_session_id', v_payment.checkout_session_id,
      'amount', v_request -> 'amount'
    );
  elsif s.payment_method = 'credits' then
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
  'Gives back what a session cost, in the caller''s transaction: a Stripe-paid session''s payment '
  'goes consumed -> refund_requested with its refund in stripe_outbox (private.request_refund), a '
  'credits session gets a ledger entry returning the debit; either way a refunded event records '
  'it. Free sessions, and payments already on their way back: nothing.';
