create or replace function public.record_checkout_opened(
  payment_id uuid,
  checkout_session_id text,
  checkout_url text,
  expires_at timestamptz
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
begin
  if payment_id is null or checkout_session_id is null or checkout_url is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'payment_id, checkout_session_id and checkout_url are required');
  end if;
  if checkout_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
    perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION', 'checkout_session_id must be a Checkout Session id (cs_...)');
  end if;
  v_payment := private.lock_payment(checkout_session_id, payment_id);
  if v_payment.id is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'no such payment');
  end if;
  if v_payment.id <> payment_id or v_payment.checkout_session_id <> checkout_session_id then
    perform private.raise_api_error(409, 'STRIPE_SESSION_MISMATCH', 'this Checkout belongs to another payment');
  end if;
  update public.payments p set
    checkout_session_id = record_checkout_opened.checkout_session_id,
    checkout_url = pg_catalog.left(record_checkout_opened.checkout_url, 2000),
    expires_at = coalesce(record_checkout_opened.expires_at, p.expires_at),
    status = case when p.status = 'creating' then 'open' else p.status end
  where p.id = v_payment.id
  returning * into v_payment;
  -- Abandoned meanwhile (the customer got a session another way): close it at Stripe too.
  if v_payment.status = 'expired' then
    perform private.enqueue_expire_checkout(v_payment);
  end if;
  return pg_catalog.to_jsonb(v_payment);
end;
$$;
comment on function public.record_checkout_opened(uuid, text, text, timestamptz) is
  'Stripe''s answer to a payment''s Checkout create request: its cs_ id and URL, creating -> open. '
  'Idempotent (retries and concurrent clicks record the same answer). A payment abandoned while '
  'the request was in flight stays expired and its Checkout is expired at Stripe. service_role only.';
