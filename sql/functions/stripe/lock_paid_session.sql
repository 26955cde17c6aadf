create or replace function private.lock_paid_session(payment_intent text) returns public.sessions
language plpgsql
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
begin
  select s.* into v_session
  from public.sessions s
  where s.metadata ->> 'payment_intent' = lock_paid_session.payment_intent;
  if not found then
    return null;
  end if;
  return private.lock_session(v_session.id);
end;
$$;

comment on function private.lock_paid_session(text) is
  'The session a payment intent paid for, locked as every transition locks it; null when no '
  'session was bought with it (a charge of something else, or one reconcile has not reached yet).';
