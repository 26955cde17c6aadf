create or replace function private.write_session(
  customer_id uuid,
  plan public.plans,
  intake_id uuid,
  payment_method text,
  stripe_session_id text,
  amount_paid integer,
  urgent boolean,
  is_specialist boolean,
  preferred_mechanic_id uuid,
  routing_type text,
  intake jsonb,
  payment_id uuid default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_existing public.sessions%rowtype;
  v_session_id uuid;
  v_balance integer;
  v_constraint text;
  v_new_intake boolean;
begin
  -- One customer at a time, across every app and PostgREST instance: concurrent calls queue
  -- here, and each then sees what the previous one committed.
  perform private.lock_customer(customer_id);

  v_new_intake := write_session.intake is not null and not exists (
    select 1 from public.intakes i where i.id = write_session.intake_id);
  -- A retried intake (same client-generated intake id, nothing paid) answers its first session.
  if write_session.intake is not null and payment_method <> 'stripe' then
    select s.* into v_existing
    from public.sessions s
    where s.intake_id = write_session.intake_id and s.customer_user_id = customer_id;
    if found then
      return pg_catalog.jsonb_build_object(
        'session_id', v_existing.id, 'session_type', v_existing.type,
        'status', v_existing.status, 'created', false
      );
    end if;
  end if;

  -- At most one active session per customer.
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
  if exists (select 1 from public.sessions s where s.intake_id = write_session.intake_id) then
    perform private.raise_api_error(409, 'INTAKE_ALREADY_USED',
      'this intake already has a session');
  end if;

  if payment_method = 'credits' then
    select coalesce(sum(c.delta), 0) into v_balance
    from public.credit_entries c
    where c.customer_user_id = customer_id;
    if v_balance < (write_session.plan).credit_cost then
      perform private.raise_api_error(402, 'INSUFFICIENT_CREDITS',
        pg_catalog.format('plan %s costs %s credits; the balance is %s',
          (write_session.plan).code, (write_session.plan).credit_cost, v_balance),
        pg_catalog.jsonb_build_object('required', (write_session.plan).credit_cost, 'balance', v_balance));
    end if;
  end if;

  -- The intake (when it came with the call), the session and everything that hangs off it.
  if v_new_intake then
    perform private.write_intake(customer_id, intake_id, (write_session.plan).code, write_session.intake,
      urgent, is_specialist, preferred_mechanic_id, routing_type);
  end if;
  begin
    with new_session as (
      insert into public.sessions
        (customer_user_id, type, status, plan, intake_id, stripe_session_id, payment_method,
         urgent, is_specialist, routing_type, preferred_mechanic_id, metadata)
      values (
        customer_id, (write_session.plan).session_type, 'pending', (write_session.plan).code, intake_id,
        write_session.stripe_session_id, write_session.payment_method,
        write_session.urgent, write_session.is_specialist, write_session.routing_type,
        write_session.preferred_mechanic_id,
        pg_catalog.jsonb_build_object('amount_paid', amount_paid, 'source', 'intake')
      )
      returning id
    ), participant as (
      insert into public.session_participants (session_id, user_id, role)
      select ns.id, customer_id, 'customer' from new_session ns
      on conflict (session_id, user_id) do update set role = excluded.role
    ), assignment as (
      insert into public.session_assignments
        (session_id, status, session_type, plan, urgent, routing_type, preferred_mechanic_id, offered_at)
      select ns.id, 'queued', (write_session.plan).session_type, (write_session.plan).code,
        write_session.urgent, write_session.routing_type, write_session.preferred_mechanic_id, pg_catalog.now()
      from new_session ns
    ), debit as (
      insert into public.credit_entries (customer_user_id, delta, reason, session_id)
      select customer_id, -(write_session.plan).credit_cost, 'session', ns.id
      from new_session ns
      where payment_method = 'credits'
    )
    insert into public.session_events (session_id, event_type, user_id, metadata)
    select ns.id, 'created', customer_id, pg_catalog.jsonb_build_object(
      'type', (write_session.plan).session_type,
      'plan', (write_session.plan).code,
      'payment_method', payment_method,
      'amount_paid', amount_paid,
      'urgent', urgent,
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

  -- A customer with a session needs no other Checkout: close the open ones through the outbox, and
  -- abandon create requests that have not come back (nobody has seen their URL).
  perform private.enqueue_expire_checkout(p)
  from public.payments p
  where p.customer_user_id = write_session.customer_id and p.status = 'open'
    and p.id is distinct from write_session.payment_id;
  update public.payments p set status = 'expired'
  where p.customer_user_id = write_session.customer_id and p.status = 'creating'
    and p.id is distinct from write_session.payment_id;

  return pg_catalog.jsonb_build_object(
    'session_id', v_session_id, 'session_type', (write_session.plan).session_type,
    'status', 'pending', 'created', true
  );
end;
$$;
comment on function private.write_session(
  uuid, public.plans, uuid, text, text, integer, boolean, boolean, uuid, text, jsonb, uuid
) is
  'The part of create_session_record every payment method shares: under the customer''s lock, '
  'refuse a second active session (409 naming it) or a used intake, check credits, then write the '
  'intake (when given), session, participant, queued assignment, credit debit and created event in '
  'one statement, and close the customer''s other open Checkouts. Raises PGRST errors; the paid '
  'path turns each into a refund.';
