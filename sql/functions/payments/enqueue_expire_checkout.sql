create or replace function private.enqueue_expire_checkout(payment public.payments) returns void
language sql
set search_path = ''
as $$
  insert into public.stripe_outbox (kind, checkout_session_id, payment_id, idempotency_key, params, reason)
  select 'expire_checkout', (enqueue_expire_checkout.payment).checkout_session_id,
         (enqueue_expire_checkout.payment).id,
         'expire-checkout-' || (enqueue_expire_checkout.payment).checkout_session_id, '{}'::jsonb,
         'the customer no longer needs this Checkout'
  where (enqueue_expire_checkout.payment).checkout_session_id is not null
  on conflict (idempotency_key) do nothing;
$$;
comment on function private.enqueue_expire_checkout(public.payments) is
  'Asks Stripe (through stripe_outbox, once per Checkout) to expire a payment''s open Checkout, so '
  'that it cannot be paid and then need a refund.';
