create or replace function private.lock_paid_session(payment_intent text) returns public.sessions
language plpgsql
set search_path = ''
as $$
declare
  v_session_id uuid;
begin
  select p.session_id into v_session_id
  from public.payments p
  where p.payment_intent = lock_paid_session.payment_intent and p.session_id is not null;
  if not found then
    return null;
  end if;
  return private.lock_session(v_session_id);
end;
$$;
comment on function private.lock_paid_session(text) is
  'The session a payment intent paid for (through public.payments), locked as every transition '
  'locks it; null when no session was bought with it.';
