create or replace function public.enqueue_stripe_request(
  kind text,
  checkout_session_id text,
  payment_intent text default null,
  session_id uuid default null,
  reason text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
  v_created boolean;
begin
  if kind is null or kind not in ('refund', 'expire_checkout') then
    perform private.raise_api_error(422, 'INVALID_KIND', 'kind must be refund or expire_checkout');
  end if;
  if checkout_session_id is null or checkout_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
    perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION',
      'checkout_session_id must be a Checkout Session id (cs_...)');
  end if;
  if enqueue_stripe_request.session_id is not null and not exists (
    select 1 from public.sessions s where s.id = enqueue_stripe_request.session_id
  ) then
    perform private.raise_api_error(404, 'SESSION_NOT_FOUND', 'no such session');
  end if;

  -- Concurrent callers with one key queue on the unique index; all but the first do nothing.
  insert into public.stripe_outbox as o (kind, checkout_session_id, payment_intent, session_id, reason)
  values (
    enqueue_stripe_request.kind, enqueue_stripe_request.checkout_session_id,
    pg_catalog.left(enqueue_stripe_request.payment_intent, 255), enqueue_stripe_request.session_id,
    pg_catalog.left(enqueue_stripe_request.reason, 500)
  )
  on conflict (idempotency_key) do nothing
  returning o.* into v_row;
  v_created := found;

  if not v_created then
    -- The first request wins; a later one may only fill in what the first did not know.
    update public.stripe_outbox o set
      payment_intent = coalesce(o.payment_intent, pg_catalog.left(enqueue_stripe_request.payment_intent, 255)),
      session_id = coalesce(o.session_id, enqueue_stripe_request.session_id),
      updated_at = pg_catalog.now()
    where o.kind = enqueue_stripe_request.kind
      and o.checkout_session_id = enqueue_stripe_request.checkout_session_id
    returning o.* into v_row;
  end if;

  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('created', v_created);
end;
$$;

comment on function public.enqueue_stripe_request(text, text, text, uuid, text) is
  'Asks for a Stripe side effect (refund or expire_checkout of a Checkout Session). Idempotent by '
  'construction: one row per kind and Checkout Session, so concurrent webhook deliveries and '
  'cancels produce one request; returns the row (new or existing) with "created". service_role '
  'only: it decides where money goes.';
