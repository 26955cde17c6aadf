create or replace function private.lock_payment(
  checkout_session_id text, payment_id uuid default null
) returns public.payments
language plpgsql
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
begin
  select p.* into v_payment
  from public.payments p
  where p.checkout_session_id = lock_payment.checkout_session_id
     or (lock_payment.payment_id is not null and p.id = lock_payment.payment_id)
  order by (p.checkout_session_id = lock_payment.checkout_session_id) desc nulls last
  limit 1;
  if not found then
    return null;
  end if;
  perform private.lock_customer(v_payment.customer_user_id);
  -- Read again under the lock: what was read above may have changed while waiting.
  select p.* into v_payment from public.payments p where p.id = v_payment.id for update;
  return v_payment;
end;
$$;
comment on function private.lock_payment(text, uuid) is
  'The payment of a Checkout Session (by its cs_ id, or by the payment id the Checkout''s metadata '
  'carries when the create answer was lost), with its customer''s lock taken, as every session '
  'write takes it; null when this service never opened that Checkout.';
