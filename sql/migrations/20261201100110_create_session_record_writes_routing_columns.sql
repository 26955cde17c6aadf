-- public.create_session_record: the one way a consultation session comes into being.
-- This file is the single editable source; each release is copied verbatim into a new
-- migration (tests/test_schema.py fails when the newest migration differs from it).
-- Release 2: takes the intake itself (written in the same transaction, so a refused request
-- leaves no row and a retry with the same intake id answers the first session); one HTTP status
-- per error code; no page URLs (the API builds those).
-- Release 3: keeps the payment intent (charges are matched by it) and closes the customer's other
-- open checkouts through the Stripe outbox, so they cannot be paid and then refunded.
-- Release 4: the routing facts (urgent, is_specialist, routing_type, preferred mechanic) go to typed
-- columns of the session and its queued offer, not to metadata.

create schema if not exists private;
revoke all on schema private from public;
comment on schema private is
  'Helpers for the API functions. Not in PostgREST''s exposed schemas, so never callable over HTTP.';

create or replace function private.raise_api_error(
  status integer,
  code text,
  message text,
  details jsonb default null
) returns void
language plpgsql
set search_path = ''
as $$
begin
  raise sqlstate 'PGRST' using
    message = pg_catalog.jsonb_build_object(
      'code', code, 'message', message, 'details', details::text, 'hint', null
    )::text,
    detail = pg_catalog.jsonb_build_object(
      'status', status, 'headers', pg_catalog.jsonb_build_object()
    )::text;
end;
$$;
revoke all on function private.raise_api_error(integer, text, text, jsonb) from public;
comment on function private.raise_api_error(integer, text, text, jsonb) is
  'Aborts the transaction with an error PostgREST answers as the given HTTP status, with a '
  'stable code callers can branch on instead of parsing messages.';

create or replace function private.write_intake(
  customer_id uuid,
  intake_id uuid,
  plan text,
  intake jsonb,
  urgent boolean,
  is_specialist boolean,
  preferred_mechanic_id uuid,
  routing_type text
) returns void
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from auth.users u where u.id = write_intake.customer_id) then
    perform private.raise_api_error(403, 'UNKNOWN_USER', 'this token''s user does not exist');
  end if;
  if intake is not null and pg_catalog.jsonb_typeof(intake) <> 'object' then
    perform private.raise_api_error(422, 'INVALID_INTAKE', 'intake must be a JSON object');
  end if;
  begin
    insert into public.intakes (
      id, customer_user_id, plan, concern, vehicle_make, vehicle_model, vehicle_year, vehicle_vin,
      urgent, is_specialist, preferred_mechanic_id, routing_type
    ) values (
      intake_id, customer_id, plan, intake ->> 'concern', intake ->> 'vehicle_make',
      intake ->> 'vehicle_model', (intake ->> 'vehicle_year')::integer, intake ->> 'vehicle_vin',
      coalesce(urgent, false), coalesce(is_specialist, false), preferred_mechanic_id,
      coalesce(routing_type, 'broadcast')
    );
  exception
    when unique_violation then
      perform private.raise_api_error(409, 'INTAKE_ALREADY_USED', 'this intake id is taken');
    when check_violation or invalid_text_representation or numeric_value_out_of_range then
      perform private.raise_api_error(422, 'INVALID_INTAKE',
        pg_catalog.format('the intake was refused: %s', sqlerrm));
  end;
end;
$$;
revoke all on function private.write_intake(uuid, uuid, text, jsonb, boolean, boolean, uuid, text)
  from public;
comment on function private.write_intake(uuid, uuid, text, jsonb, boolean, boolean, uuid, text) is
  'Stores an intake for a customer who exists, turning the table''s CHECKs into 422 INVALID_INTAKE. '
  'Only called inside create_session_record and submit_intake, under the customer''s lock.';

drop function if exists public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb
);

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
  payment_intent text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_plan public.plans%rowtype;
  v_intake public.intakes%rowtype;
  v_existing public.sessions%rowtype;
  v_session_id uuid;
  v_balance integer;
  v_constraint text;
  v_new_intake boolean;
  v_urgent boolean := coalesce(create_session_record.urgent, false);
  v_specialist boolean := coalesce(create_session_record.is_specialist, false);
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

  select p.* into v_plan
  from public.plans p
  where p.code = create_session_record.plan and p.active;
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
    if amount_paid is distinct from v_plan.price_cents
       or pg_catalog.lower(currency) is distinct from v_plan.currency then
      perform private.raise_api_error(422, 'AMOUNT_MISMATCH',
        pg_catalog.format('plan %s costs %s %s', v_plan.code, v_plan.price_cents, v_plan.currency));
    end if;
  elsif payment_method = 'credits' and v_plan.credit_cost is null then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      pg_catalog.format('plan %s cannot be paid with credits', v_plan.code));
  elsif stripe_session_id is not null then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      'stripe_session_id is only for payment_method stripe');
  elsif coalesce(amount_paid, 0) <> 0 then
    perform private.raise_api_error(422, 'AMOUNT_MISMATCH',
      pg_catalog.format('nothing is paid with %s', payment_method));
  end if;

  -- With `intake`, the intake is written below, in this transaction (unless a retry wrote it).
  select i.* into v_intake
  from public.intakes i
  where i.id = create_session_record.intake_id and i.customer_user_id = customer_id;
  v_new_intake := not found and create_session_record.intake is not null;
  if not found and not v_new_intake then
    perform private.raise_api_error(404, 'INTAKE_NOT_FOUND',
      'no such intake for this customer');
  end if;
  if not v_new_intake and v_intake.plan <> v_plan.code then
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

  -- 2. One customer at a time, across every app and PostgREST instance: concurrent calls queue
  -- here, and each then sees what the previous one committed.
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('create_session_record:' || customer_id::text, 0)
  );

  -- 3. Idempotency: Stripe delivers at least once, often concurrently.
  if stripe_session_id is not null then
    select s.* into v_existing
    from public.sessions s
    where s.stripe_session_id = create_session_record.stripe_session_id;
    if found then
      if v_existing.customer_user_id <> customer_id or v_existing.intake_id <> intake_id then
        perform private.raise_api_error(409, 'STRIPE_SESSION_MISMATCH',
          'this checkout session already paid for another intake');
      end if;
      return pg_catalog.jsonb_build_object(
        'session_id', v_existing.id, 'session_type', v_existing.type,
        'status', v_existing.status, 'created', false
      );
    end if;
  end if;

  -- A retried intake (same client-generated intake id, nothing paid) answers its first session.
  if create_session_record.intake is not null and stripe_session_id is null then
    select s.* into v_existing
    from public.sessions s
    where s.intake_id = create_session_record.intake_id and s.customer_user_id = customer_id;
    if found then
      return pg_catalog.jsonb_build_object(
        'session_id', v_existing.id, 'session_type', v_existing.type,
        'status', v_existing.status, 'created', false
      );
    end if;
  end if;

  -- 4. At most one active session per customer.
  select s.* into v_existing
  from public.sessions s
  where s.customer_user_id = customer_id and s.is_active;
  if found then
    perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS',
      'You already have an active session',
      pg_catalog.jsonb_build_object(
        'activeSessionId', v_existing.id,
        'activeSessionType', v_existing.type,
        'activeSessionStatus', v_existing.status
      ));
  end if;
  if exists (select 1 from public.sessions s where s.intake_id = create_session_record.intake_id) then
    perform private.raise_api_error(409, 'INTAKE_ALREADY_USED',
      'this intake already has a session');
  end if;

  if payment_method = 'credits' then
    select coalesce(sum(c.delta), 0) into v_balance
    from public.credit_entries c
    where c.customer_user_id = customer_id;
    if v_balance < v_plan.credit_cost then
      perform private.raise_api_error(402, 'INSUFFICIENT_CREDITS',
        pg_catalog.format('plan %s costs %s credits; the balance is %s',
          v_plan.code, v_plan.credit_cost, v_balance),
        pg_catalog.jsonb_build_object('required', v_plan.credit_cost, 'balance', v_balance));
    end if;
  end if;

  -- 5. Write the intake (when it came with the call), the session and everything that hangs off it.
  if v_new_intake then
    perform private.write_intake(customer_id, intake_id, v_plan.code, create_session_record.intake,
      v_urgent, v_specialist, preferred_mechanic_id, v_routing);
  end if;
  begin
    with new_session as (
      insert into public.sessions
        (customer_user_id, type, status, plan, intake_id, stripe_session_id,
         urgent, is_specialist, routing_type, preferred_mechanic_id, metadata)
      values (
        customer_id, v_plan.session_type, 'pending', v_plan.code, intake_id,
        create_session_record.stripe_session_id,
        v_urgent, v_specialist, v_routing, create_session_record.preferred_mechanic_id,
        pg_catalog.jsonb_build_object(
          'payment_method', payment_method,
          'amount_paid', amount_paid,
          'source', 'intake'
        ) || case when create_session_record.payment_intent is null then '{}'::jsonb
             else pg_catalog.jsonb_build_object('payment_intent',
                    pg_catalog.left(create_session_record.payment_intent, 255)) end
      )
      returning id
    ), participant as (
      insert into public.session_participants (session_id, user_id, role)
      select ns.id, customer_id, 'customer' from new_session ns
      on conflict (session_id, user_id) do update set role = excluded.role
    ), assignment as (
      insert into public.session_assignments
        (session_id, status, session_type, plan, urgent, routing_type, preferred_mechanic_id, offered_at)
      select ns.id, 'queued', v_plan.session_type, v_plan.code, v_urgent, v_routing,
        create_session_record.preferred_mechanic_id, pg_catalog.now()
      from new_session ns
    ), debit as (
      insert into public.credit_entries (customer_user_id, delta, reason, session_id)
      select customer_id, -v_plan.credit_cost, 'session', ns.id
      from new_session ns
      where payment_method = 'credits'
    )
    insert into public.session_events (session_id, event_type, user_id, metadata)
    select ns.id, 'created', customer_id, pg_catalog.jsonb_build_object(
      'type', v_plan.session_type,
      'plan', v_plan.code,
      'payment_method', payment_method,
      'amount_paid', amount_paid,
      'urgent', v_urgent,
      'source', 'intake'
    )
    from new_session ns
    returning session_id into v_session_id;
  exception when unique_violation then
    -- Only reachable by a writer that skipped the lock above; the indexes still hold the line.
    get stacked diagnostics v_constraint = constraint_name;
    if v_constraint = 'sessions_one_active_per_customer' then
      perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS',
        'You already have an active session');
    end if;
    perform private.raise_api_error(409, 'SESSION_CONFLICT',
      pg_catalog.format('a concurrent request already created this session (%s)', v_constraint));
  end;

  -- 6. A customer with a session needs no other checkout: close the open ones through the outbox.
  update public.checkouts c
  set status = 'complete', updated_at = pg_catalog.now()
  where c.id = create_session_record.stripe_session_id;
  perform public.enqueue_stripe_request('expire_checkout', c.id, null, v_session_id,
    pg_catalog.format('the customer got session %s', v_session_id))
  from public.checkouts c
  where c.customer_user_id = create_session_record.customer_id and c.status = 'open';

  return pg_catalog.jsonb_build_object(
    'session_id', v_session_id, 'session_type', v_plan.session_type,
    'status', 'pending', 'created', true
  );
end;
$$;

revoke all on function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text
) from public, anon, authenticated;
grant execute on function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text
) to service_role;

comment on function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text
) is
  'Creates a consultation session with its participant, queued assignment, created event and '
  'credit debit in one transaction, so a failure leaves nothing half-made. A per-customer advisory '
  'lock makes "no other active session" true under any concurrency, and a repeated '
  'stripe_session_id (Stripe retries) or intake id (clients retry) returns the first result. '
  'With `intake`, the intake row is written in the same transaction; the customer''s other open '
  'checkouts are expired through stripe_outbox. Errors carry an HTTP '
  'status and a stable code. service_role only: the payment fields are trusted, so customers '
  'must never call it directly.';
