create or replace function public.open_checkout(
  customer_id uuid,
  intake_id uuid,
  success_url text,
  cancel_url text,
  expires_in interval default '30 minutes'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_intake public.intakes%rowtype;
  v_plan public.plans%rowtype;
  v_active public.sessions%rowtype;
  v_payment public.payments%rowtype;
  v_id uuid := gen_random_uuid();
  v_expires timestamptz;
begin
  if customer_id is null or intake_id is null or success_url is null or cancel_url is null then
    perform private.raise_api_error(422, 'MISSING_FIELD',
      'customer_id, intake_id, success_url and cancel_url are required');
  end if;
  if expires_in is null or expires_in < interval '30 minutes' or expires_in > interval '23 hours' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'expires_in must be between 30 minutes and 23 hours');
  end if;
  perform private.lock_customer(customer_id);

  select i.* into v_intake
  from public.intakes i
  where i.id = open_checkout.intake_id and i.customer_user_id = open_checkout.customer_id;
  if not found then
    perform private.raise_api_error(404, 'INTAKE_NOT_FOUND', 'no such intake for this customer');
  end if;
  select p.* into v_plan from public.plans p where p.code = v_intake.plan and p.active;
  if not found then
    perform private.raise_api_error(404, 'UNKNOWN_PLAN',
      pg_catalog.format('plan %L is not offered', v_intake.plan));
  end if;
  if v_plan.is_free then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      pg_catalog.format('plan %s is free: nothing to pay', v_plan.code));
  end if;
  select s.* into v_active from public.sessions s where s.customer_user_id = customer_id and s.is_active;
  if found then
    perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS', 'You already have an active session',
      pg_catalog.jsonb_build_object('activeSessionId', v_active.id, 'activeSessionType', v_active.type,
                                    'activeSessionStatus', v_active.status));
  end if;
  if exists (select 1 from public.sessions s where s.intake_id = open_checkout.intake_id)
     or exists (select 1 from public.payments p where p.intake_id = open_checkout.intake_id
                and p.status in ('paid', 'consumed')) then
    perform private.raise_api_error(409, 'INTAKE_ALREADY_USED', 'this intake already has a session');
  end if;
  if exists (select 1 from public.payments p where p.intake_id = open_checkout.intake_id
             and p.status = 'processing') then
    perform private.raise_api_error(409, 'PAYMENT_PROCESSING',
      'this intake''s payment is being processed by the bank; its session follows when it clears');
  end if;

  -- A create request not confirmed for 2 minutes is abandoned (nobody saw its URL); a younger one
  -- is re-sent exactly as stored, so concurrent clicks share one Checkout.
  update public.payments p set status = 'expired'
  where p.intake_id = open_checkout.intake_id and p.status = 'creating'
    and p.created_at < pg_catalog.now() - interval '2 minutes';
  select p.* into v_payment
  from public.payments p
  where p.intake_id = open_checkout.intake_id
    and (p.status = 'creating'
         or (p.status = 'open' and p.checkout_url is not null
             and p.expires_at > pg_catalog.now() + interval '2 minutes'))
  order by p.attempt desc
  limit 1;
  if found then
    return pg_catalog.to_jsonb(v_payment) || pg_catalog.jsonb_build_object('reused', true);
  end if;

  -- Stripe accepts expires_at 30 minutes to 24 hours ahead; 2 minutes of margin keep a re-send valid.
  v_expires := pg_catalog.date_trunc('second', pg_catalog.now() + expires_in + interval '2 minutes');
  insert into public.payments (id, customer_user_id, intake_id, attempt, plan, amount, currency, status,
                               idempotency_key, request, expires_at)
  select v_id, customer_id, v_intake.id, coalesce(pg_catalog.max(p.attempt) + 1, 0), v_plan.code,
         v_plan.price_cents, v_plan.currency, 'creating', 'checkout-' || v_id::text,
         pg_catalog.jsonb_build_object(
           'mode', 'payment',
           'client_reference_id', customer_id::text,
           'line_items', pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
             'quantity', 1,
             'price_data', pg_catalog.jsonb_build_object(
               'currency', v_plan.currency,
               'unit_amount', v_plan.price_cents,
               'product_data', pg_catalog.jsonb_build_object('name',
                 pg_catalog.format('%s consultation (%s)', pg_catalog.initcap(v_plan.session_type), v_plan.code))
             )
           )),
           'metadata', pg_catalog.jsonb_build_object(
             'payment_id', v_id::text, 'customer_id', customer_id::text, 'intake_id', v_intake.id::text,
             'plan', v_plan.code, 'session_type', v_plan.session_type
           ),
           'payment_intent_data', pg_catalog.jsonb_build_object(
             'metadata', pg_catalog.jsonb_build_object('payment_id', v_id::text)
           ),
           'expires_at', extract(epoch from v_expires)::bigint,
           'success_url', success_url,
           'cancel_url', cancel_url
         ),
         v_expires
  from public.payments p
  where p.intake_id = v_intake.id
  returning * into v_payment;
  return pg_catalog.to_jsonb(v_payment) || pg_catalog.jsonb_build_object('reused', false);
end;
$$;
comment on function public.open_checkout(uuid, uuid, text, text, interval) is
  'The waiver''s Checkout: under the customer''s lock, refuses what can no longer be sold (an active '
  'session, a used intake, a payment still clearing), reuses an open Checkout or a create request '
  'still in flight, or writes a new payment (attempt n) with the catalog price as its snapshot and '
  'the exact Stripe request and key, before anything is sent. The service sends `request` with '
  '`idempotency_key` and records the answer with record_checkout_opened. service_role only.';
