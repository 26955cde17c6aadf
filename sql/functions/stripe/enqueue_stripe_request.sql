create or replace function public.enqueue_stripe_request(
  kind text,
  checkout_session_id text,
  reason text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
  v_row public.stripe_outbox%rowtype;
begin
  if kind is null or kind not in ('refund', 'expire_checkout') then
    perform private.raise_api_error(422, 'INVALID_KIND', 'kind must be refund or expire_checkout');
  end if;
  if checkout_session_id is null or checkout_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
    perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION',
      'checkout_session_id must be a Checkout Session id (cs_...)');
  end if;
  v_payment := private.lock_payment(checkout_session_id);
  if v_payment.id is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'this service did not open that Checkout');
  end if;
  if kind = 'refund' then
    if v_payment.status = 'consumed' and exists (
      select 1 from public.sessions s where s.id = v_payment.session_id and s.status <> 'expired'
        and s.status <> 'cancelled'
    ) then
      perform private.raise_api_error(409, 'PAYMENT_IN_USE',
        'this payment bought a session that has not ended unstarted: cancel the session instead',
        pg_catalog.jsonb_build_object('session_id', v_payment.session_id));
    end if;
    perform private.request_refund(v_payment, coalesce(reason, 'asked by an operator'));
  else
    perform private.enqueue_expire_checkout(v_payment);
  end if;
  select o.* into v_row
  from public.stripe_outbox o
  where o.payment_id = v_payment.id and o.kind = enqueue_stripe_request.kind
  order by o.id desc
  limit 1;
  if not found then
    perform private.raise_api_error(409, 'NOTHING_TO_SEND',
      pg_catalog.format('nothing to send: the payment is %s', v_payment.status),
      pg_catalog.jsonb_build_object('payment_status', v_payment.status));
  end if;
  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object(
    'payment_status', (select p.status from public.payments p where p.id = v_payment.id));
end;
$$;
comment on function public.enqueue_stripe_request(text, text, text) is
  'An operator''s request to Stripe for a payment this service sold: refund (a paid payment that '
  'bought nothing, or whose refund failed: a new request with its own key) or expire_checkout (an '
  'open Checkout). Idempotent: asking again while a request is on its way answers that request. A '
  'payment whose session is pending, live or completed is refused (cancel the session instead). '
  'service_role only: it decides where money goes.';
