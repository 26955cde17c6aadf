-- public.create_session_record: the one way a consultation session comes into being.
-- Its one editable source; each release is copied into a new migration (tests/test_schema.py
-- fails when the newest migration differs from it).
-- Release 4: a paid session is made only from a paid payment (public.payments), consumed in the
-- same transaction; a paid payment that cannot become a session is refunded in that transaction
-- (private.consume_payment). The writes every payment method shares are private.write_session.

create or replace function public.create_session_record(
  customer_id uuid,
  plan text,
  intake_id uuid,
  payment_method text,
  type text default null,
  stripe_session_id text default null,
  amount_paid integer default null,
  currency text default null,
  customer_email text default null,
  urgent boolean default false,
  is_specialist boolean default false,
  preferred_mechanic_id uuid default null,
  routing_type text default 'broadcast',
  intake jsonb default null,
  payment_intent text default null,
  payment_id uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_plan public.plans%rowtype;
  v_intake public.intakes%rowtype;
  v_routing text := coalesce(create_session_record.routing_type, 'broadcast');
begin
  -- 1. Validate everything the caller sent against what the database knows.
  if customer_id is null or intake_id is null or plan is null or payment_method is null then
    perform private.raise_api_error(422, 'MISSING_FIELD',
      'customer_id, plan, intake_id and payment_method are required');
  end if;
  if payment_method not in ('free', 'stripe', 'credits') then
    perform private.raise_api_error(422, 'INVALID_PAYMENT_METHOD',
      'payment_method must be free, stripe or credits');
  end if;
  if v_routing not in ('broadcast', 'workshop_only', 'hybrid', 'priority_broadcast') then
    perform private.raise_api_error(422, 'INVALID_ROUTING_TYPE',
      'routing_type must be broadcast, workshop_only, hybrid or priority_broadcast');
  end if;
  if create_session_record.type is not null
     and create_session_record.type not in ('chat', 'video', 'diagnostic') then
    perform private.raise_api_error(422, 'INVALID_TYPE', 'type must be chat, video or diagnostic');
  end if;
  if customer_email is not null
     and (pg_catalog.char_length(customer_email) > 320 or customer_email !~ '^[^@\s]+@[^@\s]+$') then
    perform private.raise_api_error(422, 'INVALID_EMAIL', 'customer_email is not an email address');
  end if;

  -- A paid plan is sold at its snapshot (public.payments), so it may have left the catalog since.
  select p.* into v_plan
  from public.plans p
  where p.code = create_session_record.plan and (p.active or payment_method = 'stripe');
  if not found then
    perform private.raise_api_error(404, 'UNKNOWN_PLAN',
      pg_catalog.format('plan %L is not offered', pg_catalog.left(create_session_record.plan, 40)));
  end if;

  if create_session_record.type is not null and create_session_record.type <> v_plan.session_type then
    perform private.raise_api_error(422, 'TYPE_PLAN_MISMATCH',
      pg_catalog.format('plan %s is a %s session, not %s',
        v_plan.code, v_plan.session_type, create_session_record.type));
  end if;

  if v_plan.is_free <> (payment_method = 'free') then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      pg_catalog.format('plan %s cannot be paid with %s', v_plan.code, payment_method));
  end if;
  if payment_method = 'stripe' then
    if stripe_session_id is null
       or stripe_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
      perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION',
        'a stripe payment needs the Checkout Session id (cs_...)');
    end if;
    if amount_paid is null or currency is null then
      perform private.raise_api_error(422, 'AMOUNT_MISMATCH', 'a stripe payment needs amount_paid and currency');
    end if;
  elsif payment_method = 'credits' and v_plan.credit_cost is null then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      pg_catalog.format('plan %s cannot be paid with credits', v_plan.code));
  elsif stripe_session_id is not null or payment_id is not null then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      'stripe_session_id and payment_id are only for payment_method stripe');
  elsif coalesce(amount_paid, 0) <> 0 then
    perform private.raise_api_error(422, 'AMOUNT_MISMATCH',
      pg_catalog.format('nothing is paid with %s', payment_method));
  end if;

  -- 2. Paid: the payment decides (one session or one full refund), under the customer's lock.
  if payment_method = 'stripe' then
    return private.consume_payment(customer_id, v_plan.code, intake_id, stripe_session_id, payment_id,
      amount_paid, currency, payment_intent);
  end if;

  -- 3. Free or credits. With `intake`, the intake is written in this transaction (unless a retry wrote it).
  select i.* into v_intake
  from public.intakes i
  where i.id = create_session_record.intake_id and i.customer_user_id = customer_id;
  if not found and create_session_record.intake is null then
    perform private.raise_api_error(404, 'INTAKE_NOT_FOUND',
      'no such intake for this customer');
  end if;
  if found and v_intake.plan <> v_plan.code then
    perform private.raise_api_error(422, 'INTAKE_PLAN_MISMATCH',
      pg_catalog.format('the intake is for plan %s', v_intake.plan));
  end if;

  if preferred_mechanic_id is not null and not exists (
    select 1 from public.mechanics m
    where m.user_id = create_session_record.preferred_mechanic_id and m.active
  ) then
    perform private.raise_api_error(404, 'MECHANIC_NOT_FOUND',
      'the preferred mechanic does not exist or is not active');
  end if;

  return private.write_session(customer_id, v_plan, intake_id, payment_method, null, amount_paid,
    coalesce(urgent, false), coalesce(is_specialist, false), preferred_mechanic_id, v_routing,
    create_session_record.intake);
end;
$$;

comment on function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text, uuid
) is
  'Creates a consultation session with its participant, queued assignment, created event and '
  'credit debit in one transaction, so a failure leaves nothing half-made. A per-customer advisory '
  'lock makes "no other active session" true under any concurrency, and a repeated intake id '
  '(clients retry) returns the first result. Paid (stripe): the Checkout''s payment is consumed '
  'in the same transaction, or refunded in full when the session cannot be made; a repeated '
  'Checkout (Stripe retries) answers its session, a refunded one creates nothing. Errors carry an '
  'HTTP status and a stable code. service_role only: the payment fields are trusted, so customers '
  'must never call it directly.';
