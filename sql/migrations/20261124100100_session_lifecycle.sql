-- Sessions end: a mechanic accepts, starts and completes (or releases before starting); the customer
-- cancels; nobody accepting in time expires it. Every transition is one function, one transaction,
-- under the per-customer advisory lock create_session_record takes, idempotent, logged in
-- session_events, and refunds leave through public.stripe_outbox or the credits ledger.

alter table public.session_events drop constraint session_events_event_type_check;
alter table public.session_events add constraint session_events_event_type_check check (
  event_type in (
    'created', 'assigned', 'started', 'ended', 'cancelled', 'refunded', 'expired', 'released',
    'disputed'
  )
);

create unique index credit_entries_one_refund_per_session
  on public.credit_entries (session_id) where reason = 'refund';
comment on index public.credit_entries_one_refund_per_session is
  'A session''s credits come back at most once, whichever of cancel or expiry gets there.';

create unique index session_assignments_one_open_per_session
  on public.session_assignments (session_id) where status in ('queued', 'offered', 'accepted');
comment on index public.session_assignments_one_open_per_session is
  'A session is offered, or held by one mechanic, never both: the backstop for the customer lock '
  'the transitions take.';

comment on table public.sessions is
  'Consultations. Created only by create_session_record and moved only by the lifecycle functions '
  '(accept_assignment, start_session, complete_session, release_session, cancel_session, '
  'expire_sessions); at most one active per customer.';

-- Shared helpers (schema private: never reachable over HTTP).

create or replace function private.lock_customer(customer_id uuid, wait boolean default true)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_key bigint := pg_catalog.hashtextextended('create_session_record:' || customer_id::text, 0);
begin
  if wait then
    perform pg_catalog.pg_advisory_xact_lock(v_key);
    return true;
  end if;
  return pg_catalog.pg_try_advisory_xact_lock(v_key);
end;
$$;
comment on function private.lock_customer(uuid, boolean) is
  'The per-customer transaction lock every session write takes (the key create_session_record '
  'uses), so creation and every transition of one customer''s sessions happen one at a time. '
  'wait => false only tries, for the expiry sweep, which must never wait.';

create or replace function private.lock_session(session_id uuid, customer_id uuid default null)
returns public.sessions
language plpgsql
set search_path = ''
as $$
declare
  v_customer uuid;
  v_session public.sessions%rowtype;
begin
  if lock_session.session_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'session_id is required');
  end if;
  select s.customer_user_id into v_customer
  from public.sessions s
  where s.id = lock_session.session_id
    and (lock_session.customer_id is null or s.customer_user_id = lock_session.customer_id);
  if not found then
    perform private.raise_api_error(404, 'SESSION_NOT_FOUND', 'no such session');
  end if;
  perform private.lock_customer(v_customer);
  -- Read again under the lock: what was read above may have changed while waiting.
  select s.* into v_session from public.sessions s where s.id = lock_session.session_id for update;
  return v_session;
end;
$$;
comment on function private.lock_session(uuid, uuid) is
  'Finds a session (of this customer, when one is given; 404 SESSION_NOT_FOUND otherwise), takes '
  'its customer''s lock and returns the row as it is now, locked for update.';

create or replace function private.log_event(
  session_id uuid, event_type text, user_id uuid, metadata jsonb default '{}'
) returns void
language sql
set search_path = ''
as $$
  insert into public.session_events (session_id, event_type, user_id, metadata)
  values (log_event.session_id, log_event.event_type, log_event.user_id,
          coalesce(log_event.metadata, '{}'::jsonb));
$$;
comment on function private.log_event(uuid, text, uuid, jsonb) is
  'Appends one row to a session''s history.';

create or replace function private.move_session(
  session public.sessions, status text, event_type text, user_id uuid, metadata jsonb default '{}'
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.sessions s
  set status = move_session.status, updated_at = pg_catalog.now()
  where s.id = (move_session.session).id;
  perform private.log_event((move_session.session).id, move_session.event_type, move_session.user_id,
    coalesce(move_session.metadata, '{}'::jsonb)
      || pg_catalog.jsonb_build_object('from', (move_session.session).status, 'to', move_session.status));
end;
$$;
comment on function private.move_session(public.sessions, text, text, uuid, jsonb) is
  'Sets a session''s status and updated_at and writes the event that says so, with from/to.';

create or replace function private.session_state(session_id uuid, changed boolean) returns jsonb
language sql
stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'session_id', s.id,
    'status', s.status,
    'session_type', s.type,
    'plan', s.plan,
    'customer_id', s.customer_user_id,
    'mechanic_id', case when a.status = 'accepted' then a.mechanic_id end,
    'assignment_id', a.id,
    'assignment_status', a.status,
    'accepted_at', case when a.status = 'accepted' then a.accepted_at end,
    'updated_at', s.updated_at,
    'refund', (
      select e.metadata from public.session_events e
      where e.session_id = s.id and e.event_type = 'refunded'
      order by e.id desc limit 1
    ),
    'changed', session_state.changed
  )
  from public.sessions s
  left join lateral (
    select a.* from public.session_assignments a
    where a.session_id = s.id
    order by (a.status = 'accepted') desc, (a.status = 'queued') desc, a.created_at desc, a.offered_at desc
    limit 1
  ) a on true
  where s.id = session_state.session_id;
$$;
comment on function private.session_state(uuid, boolean) is
  'What every transition answers: the session, its current assignment (the accepted one, else the '
  'queued one, else the latest), its mechanic, the refund recorded (a refunded event''s metadata) '
  'and whether this call changed anything.';

create or replace function private.assigned_mechanic(session_id uuid) returns uuid
language sql
stable
set search_path = ''
as $$
  select a.mechanic_id from public.session_assignments a
  where a.session_id = assigned_mechanic.session_id and a.status = 'accepted';
$$;
comment on function private.assigned_mechanic(uuid) is
  'The mechanic holding the session''s accepted assignment (at most one: a unique index), or null.';

create or replace function private.require_active_mechanic(mechanic_id uuid) returns public.mechanics
language plpgsql
stable
set search_path = ''
as $$
declare
  v_mechanic public.mechanics%rowtype;
begin
  if require_active_mechanic.mechanic_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'mechanic_id is required');
  end if;
  select m.* into v_mechanic from public.mechanics m where m.user_id = require_active_mechanic.mechanic_id;
  if not found then
    perform private.raise_api_error(403, 'NOT_A_MECHANIC', 'this user is not a mechanic');
  end if;
  if not v_mechanic.active then
    perform private.raise_api_error(403, 'MECHANIC_INACTIVE', 'this mechanic is not active');
  end if;
  return v_mechanic;
end;
$$;
comment on function private.require_active_mechanic(uuid) is
  'The mechanic row, or 403 NOT_A_MECHANIC / MECHANIC_INACTIVE.';

create or replace function private.mechanic_may_take(
  m public.mechanics, s public.sessions, a public.session_assignments, as_of timestamptz
) returns boolean
language sql
immutable
set search_path = ''
as $$
  select (m).active
    and (m).user_id <> (s).customer_user_id
    and (
      (m).user_id = r.preferred
      or (
        (not r.specialist or (m).is_specialist)
        and case r.routing
          when 'workshop_only' then r.preferred is null
          when 'priority_broadcast' then r.preferred is null or as_of >= (a).offered_at + interval '5 minutes'
          when 'hybrid' then (m).is_specialist
          else true
        end
      )
    )
  from (
    select
      ((a).metadata ->> 'preferred_mechanic_id')::uuid as preferred,
      coalesce(((s).metadata ->> 'is_specialist')::boolean, false) as specialist,
      coalesce((s).metadata ->> 'routing_type', 'broadcast') as routing
  ) r;
$$;
comment on function private.mechanic_may_take(
  public.mechanics, public.sessions, public.session_assignments, timestamptz
) is
  'The routing rules, defined once (accept_assignment and mechanic_queue_for both ask here). '
  'Only active mechanics, never the customer themself. The preferred mechanic (the assignment''s '
  'metadata.preferred_mechanic_id) may always take the session. Anyone else: an is_specialist '
  'session needs a specialist, and by routing_type: broadcast, any mechanic; workshop_only, '
  'nobody but the preferred one; priority_broadcast, the preferred one alone for 5 minutes after '
  'offered_at, then anyone; hybrid, any specialist. Without a preferred mechanic, workshop_only and '
  'priority_broadcast act as broadcast and hybrid as specialists-only. A workshop_only session '
  'whose preferred mechanic is inactive is taken by nobody and expires (and is refunded).';

create or replace function private.refund_session(session public.sessions, user_id uuid, cause text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  s public.sessions%rowtype := refund_session.session;
  v_request jsonb;
  v_credits integer;
  v_entry bigint;
  v_refund jsonb;
begin
  if s.stripe_session_id is not null then
    v_request := public.enqueue_stripe_request(
      'refund', s.stripe_session_id,
      coalesce(s.metadata ->> 'payment_intent',
        (select e.payload #>> '{data,object,payment_intent}' from public.stripe_events e
         where e.checkout_session_id = s.stripe_session_id
           and e.payload #>> '{data,object,payment_intent}' is not null
         order by e.received_at desc limit 1)),
      s.id, 'session ' || refund_session.cause
    );
    v_refund := pg_catalog.jsonb_build_object(
      'method', 'stripe', 'status', 'requested', 'outbox_id', v_request -> 'id',
      'checkout_session_id', s.stripe_session_id, 'amount', s.metadata -> 'amount_paid'
    );
  elsif s.metadata ->> 'payment_method' = 'credits' then
    select -c.delta into v_credits
    from public.credit_entries c
    where c.session_id = s.id and c.reason = 'session';
    if v_credits is null then
      return;
    end if;
    insert into public.credit_entries (customer_user_id, delta, reason, session_id)
    values (s.customer_user_id, v_credits, 'refund', s.id)
    on conflict (session_id) where reason = 'refund' do nothing
    returning id into v_entry;
    if v_entry is null then
      return;
    end if;
    v_refund := pg_catalog.jsonb_build_object(
      'method', 'credits', 'status', 'credited', 'credits', v_credits, 'credit_entry_id', v_entry
    );
  else
    return;  -- free: nothing was paid
  end if;
  perform private.log_event(s.id, 'refunded', refund_session.user_id,
    v_refund || pg_catalog.jsonb_build_object('reason', refund_session.cause));
end;
$$;
comment on function private.refund_session(public.sessions, uuid, text) is
  'Gives back what a session cost, in the caller''s transaction: a Stripe-paid session gets a full '
  'refund request in stripe_outbox (key refund-<checkout id>, payment intent from the recorded '
  'webhook when known), a credits session a ledger entry returning the debit; either way a '
  'refunded event (method, status, outbox_id or credits) records it. Free sessions: nothing.';

create or replace function private.end_unstarted_session(
  session public.sessions, status text, user_id uuid, metadata jsonb
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.session_assignments a
  set status = end_unstarted_session.status
  where a.session_id = (end_unstarted_session.session).id and a.status in ('queued', 'offered');
  perform private.move_session(end_unstarted_session.session, end_unstarted_session.status,
    end_unstarted_session.status, end_unstarted_session.user_id, end_unstarted_session.metadata);
  perform private.refund_session(end_unstarted_session.session, end_unstarted_session.user_id,
    end_unstarted_session.status);
end;
$$;
comment on function private.end_unstarted_session(public.sessions, text, uuid, jsonb) is
  'Cancel and expiry in one place: status cancelled or expired for the session, its open offers '
  'and its event, then the refund. An accepted assignment stays accepted: it records who had '
  'taken the session, whose status says how it ended.';

-- The API functions.

create or replace function public.accept_assignment(assignment_id uuid, mechanic_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_mechanic public.mechanics%rowtype;
  v_assignment public.session_assignments%rowtype;
  v_session public.sessions%rowtype;
begin
  v_mechanic := private.require_active_mechanic(accept_assignment.mechanic_id);
  if accept_assignment.assignment_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'assignment_id is required');
  end if;
  select a.* into v_assignment from public.session_assignments a where a.id = accept_assignment.assignment_id;
  if not found then
    perform private.raise_api_error(404, 'ASSIGNMENT_NOT_FOUND', 'no such assignment');
  end if;

  v_session := private.lock_session(v_assignment.session_id);
  select a.* into v_assignment
  from public.session_assignments a
  where a.id = accept_assignment.assignment_id
  for update;

  if v_assignment.status = 'accepted' then
    if v_assignment.mechanic_id = v_mechanic.user_id then
      return private.session_state(v_session.id, false);
    end if;
    perform private.raise_api_error(409, 'ASSIGNMENT_TAKEN', 'another mechanic accepted this session first');
  end if;
  if v_assignment.status <> 'queued' or v_session.status <> 'pending' then
    perform private.raise_api_error(409, 'ASSIGNMENT_CLOSED', 'this assignment is no longer offered',
      pg_catalog.jsonb_build_object(
        'assignment_status', v_assignment.status, 'session_status', v_session.status));
  end if;
  if not private.mechanic_may_take(v_mechanic, v_session, v_assignment, pg_catalog.now()) then
    perform private.raise_api_error(403, 'NOT_ELIGIBLE', 'this session''s routing does not offer it to you',
      pg_catalog.jsonb_build_object('routing_type', v_session.metadata ->> 'routing_type'));
  end if;

  update public.session_assignments a
  set status = 'accepted', mechanic_id = v_mechanic.user_id, accepted_at = pg_catalog.now()
  where a.id = v_assignment.id;
  insert into public.session_participants (session_id, user_id, role)
  values (v_session.id, v_mechanic.user_id, 'mechanic')
  on conflict (session_id, user_id) do nothing;
  perform private.move_session(v_session, 'waiting', 'assigned', v_mechanic.user_id,
    pg_catalog.jsonb_build_object('assignment_id', v_assignment.id));
  return private.session_state(v_session.id, true);
end;
$$;

create or replace function public.mechanic_queue_for(mechanic_id uuid, max_items integer default 100)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_mechanic public.mechanics%rowtype;
  v_queue jsonb;
begin
  v_mechanic := private.require_active_mechanic(mechanic_queue_for.mechanic_id);
  if max_items is null or max_items not between 1 and 1000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_items must be between 1 and 1000');
  end if;
  select coalesce(pg_catalog.jsonb_agg(q.item order by q.urgent desc, q.offered_at desc), '[]'::jsonb)
  into v_queue
  from (
    select a.urgent, a.offered_at, pg_catalog.jsonb_build_object(
      'assignment_id', a.id,
      'session_id', a.session_id,
      'session_type', a.session_type,
      'plan', a.plan,
      'urgent', a.urgent,
      'offered_at', a.offered_at,
      'routing_type', coalesce(s.metadata ->> 'routing_type', 'broadcast'),
      'preferred', coalesce(a.metadata ->> 'preferred_mechanic_id' = v_mechanic.user_id::text, false)
    ) as item
    from public.session_assignments a
    join public.sessions s on s.id = a.session_id
    where a.status = 'queued'
      and s.status = 'pending'
      and private.mechanic_may_take(v_mechanic, s, a, pg_catalog.now())
    order by a.urgent desc, a.offered_at desc
    limit max_items
  ) q;
  return v_queue;
end;
$$;

create or replace function private.advance_session(
  session_id uuid, mechanic_id uuid, from_status text, to_status text, event_type text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
begin
  if advance_session.mechanic_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'mechanic_id is required');
  end if;
  v_session := private.lock_session(advance_session.session_id);
  if private.assigned_mechanic(v_session.id) is distinct from advance_session.mechanic_id then
    perform private.raise_api_error(403, 'NOT_ASSIGNED_MECHANIC', 'only the assigned mechanic may do this');
  end if;
  if v_session.status = advance_session.to_status then
    return private.session_state(v_session.id, false);
  end if;
  if v_session.status <> advance_session.from_status then
    perform private.raise_api_error(409, 'INVALID_TRANSITION',
      pg_catalog.format('the session is %s, not %s', v_session.status, advance_session.from_status),
      pg_catalog.jsonb_build_object('status', v_session.status, 'expected', advance_session.from_status));
  end if;
  perform private.move_session(v_session, advance_session.to_status, advance_session.event_type,
    advance_session.mechanic_id);
  return private.session_state(v_session.id, true);
end;
$$;
comment on function private.advance_session(uuid, uuid, text, text, text) is
  'start_session and complete_session: the assigned mechanic moves the session from one status to '
  'the next; already there answers changed false; anything else is 409 INVALID_TRANSITION.';

create or replace function public.start_session(session_id uuid, mechanic_id uuid) returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.advance_session(start_session.session_id, start_session.mechanic_id,
    'waiting', 'live', 'started');
$$;

create or replace function public.complete_session(session_id uuid, mechanic_id uuid) returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.advance_session(complete_session.session_id, complete_session.mechanic_id,
    'live', 'completed', 'ended');
$$;

create or replace function public.release_session(session_id uuid, mechanic_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
  v_assignment public.session_assignments%rowtype;
  v_fresh uuid;
begin
  if release_session.mechanic_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'mechanic_id is required');
  end if;
  v_session := private.lock_session(release_session.session_id);
  select a.* into v_assignment
  from public.session_assignments a
  where a.session_id = v_session.id and a.status = 'accepted'
  for update;
  if v_assignment.mechanic_id is distinct from release_session.mechanic_id then
    if v_session.status = 'pending' and exists (
      select 1 from public.session_assignments a
      where a.session_id = v_session.id and a.mechanic_id = release_session.mechanic_id
        and a.status = 'cancelled' and a.metadata ? 'released_at'
    ) then
      return private.session_state(v_session.id, false);  -- this mechanic already released it
    end if;
    perform private.raise_api_error(403, 'NOT_ASSIGNED_MECHANIC', 'only the assigned mechanic may do this');
  end if;
  if v_session.status <> 'waiting' then
    perform private.raise_api_error(409, 'INVALID_TRANSITION',
      pg_catalog.format('the session is %s, not waiting', v_session.status),
      pg_catalog.jsonb_build_object('status', v_session.status, 'expected', 'waiting'));
  end if;

  update public.session_assignments a
  set status = 'cancelled',
      metadata = a.metadata || pg_catalog.jsonb_build_object('released_at', pg_catalog.now())
  where a.id = v_assignment.id;
  -- A fresh offer: offered_at is now, so the expiry clock (and a priority window) starts again.
  insert into public.session_assignments (session_id, status, session_type, plan, urgent, offered_at, metadata)
  values (v_session.id, 'queued', v_assignment.session_type, v_assignment.plan, v_assignment.urgent,
          pg_catalog.now(), v_assignment.metadata - 'released_at')
  returning id into v_fresh;
  delete from public.session_participants p
  where p.session_id = v_session.id and p.user_id = release_session.mechanic_id and p.role = 'mechanic';
  perform private.move_session(v_session, 'pending', 'released', release_session.mechanic_id,
    pg_catalog.jsonb_build_object('assignment_id', v_assignment.id, 'new_assignment_id', v_fresh));
  return private.session_state(v_session.id, true);
end;
$$;

create or replace function public.cancel_session(session_id uuid, customer_id uuid, reason text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
begin
  if cancel_session.customer_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'customer_id is required');
  end if;
  v_session := private.lock_session(cancel_session.session_id, cancel_session.customer_id);
  if v_session.status = 'cancelled' then
    return private.session_state(v_session.id, false);
  end if;
  if v_session.status not in ('pending', 'waiting') then
    perform private.raise_api_error(409, 'SESSION_NOT_CANCELLABLE',
      pg_catalog.format('a %s session cannot be cancelled', v_session.status),
      pg_catalog.jsonb_build_object('status', v_session.status));
  end if;
  perform private.end_unstarted_session(v_session, 'cancelled', cancel_session.customer_id,
    pg_catalog.jsonb_build_object('reason', pg_catalog.left(cancel_session.reason, 500)));
  return private.session_state(v_session.id, true);
end;
$$;

create or replace function public.expire_sessions(
  older_than interval default '30 minutes',
  urgent_older_than interval default '10 minutes',
  max_sessions integer default 500
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_candidate record;
  v_session public.sessions%rowtype;
  v_assignment public.session_assignments%rowtype;
  v_limit interval;
  v_expired uuid[] := '{}';
  v_skipped integer := 0;
begin
  if older_than is null or urgent_older_than is null
     or older_than <= interval '0' or urgent_older_than <= interval '0' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'older_than and urgent_older_than must be positive');
  end if;
  if max_sessions is null or max_sessions not between 1 and 10000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_sessions must be between 1 and 10000');
  end if;

  for v_candidate in
    select s.id, s.customer_user_id
    from public.sessions s
    join public.session_assignments a on a.session_id = s.id and a.status = 'queued'
    where s.status = 'pending'
      and a.offered_at < pg_catalog.now() - case when a.urgent then urgent_older_than else older_than end
    order by a.offered_at
    limit max_sessions
  loop
    -- Never wait: a customer or session another transaction holds is left for the next sweep.
    if not private.lock_customer(v_candidate.customer_user_id, false) then
      v_skipped := v_skipped + 1;
      continue;
    end if;
    select s.* into v_session from public.sessions s where s.id = v_candidate.id for update skip locked;
    if not found then
      v_skipped := v_skipped + 1;
      continue;
    end if;
    -- Under the lock, look again: an accept, release or cancel may have committed since the scan.
    select a.* into v_assignment
    from public.session_assignments a
    where a.session_id = v_session.id and a.status = 'queued';
    v_limit := case when v_assignment.urgent then urgent_older_than else older_than end;
    if v_session.status <> 'pending' or v_assignment.id is null
       or v_assignment.offered_at >= pg_catalog.now() - v_limit then
      continue;
    end if;
    perform private.end_unstarted_session(v_session, 'expired', null,
      pg_catalog.jsonb_build_object(
        'offered_at', v_assignment.offered_at, 'urgent', v_assignment.urgent, 'limit', v_limit::text));
    v_expired := v_expired || v_session.id;
  end loop;

  return pg_catalog.jsonb_build_object(
    'expired', pg_catalog.cardinality(v_expired),
    'session_ids', pg_catalog.to_jsonb(v_expired),
    'skipped', v_skipped
  );
end;
$$;

-- Private helpers are for the functions above only.
revoke all on function private.lock_customer(uuid, boolean) from public;
revoke all on function private.lock_session(uuid, uuid) from public;
revoke all on function private.log_event(uuid, text, uuid, jsonb) from public;
revoke all on function private.move_session(public.sessions, text, text, uuid, jsonb) from public;
revoke all on function private.session_state(uuid, boolean) from public;
revoke all on function private.assigned_mechanic(uuid) from public;
revoke all on function private.require_active_mechanic(uuid) from public;
revoke all on function private.mechanic_may_take(
  public.mechanics, public.sessions, public.session_assignments, timestamptz
) from public;
revoke all on function private.refund_session(public.sessions, uuid, text) from public;
revoke all on function private.end_unstarted_session(public.sessions, text, uuid, jsonb) from public;
revoke all on function private.advance_session(uuid, uuid, text, text, text) from public;

-- The API functions: service_role only (the service has checked who the caller is).
revoke all on function public.accept_assignment(uuid, uuid) from public, anon, authenticated;
grant execute on function public.accept_assignment(uuid, uuid) to service_role;
revoke all on function public.mechanic_queue_for(uuid, integer) from public, anon, authenticated;
grant execute on function public.mechanic_queue_for(uuid, integer) to service_role;
revoke all on function public.start_session(uuid, uuid) from public, anon, authenticated;
grant execute on function public.start_session(uuid, uuid) to service_role;
revoke all on function public.complete_session(uuid, uuid) from public, anon, authenticated;
grant execute on function public.complete_session(uuid, uuid) to service_role;
revoke all on function public.release_session(uuid, uuid) from public, anon, authenticated;
grant execute on function public.release_session(uuid, uuid) to service_role;
revoke all on function public.cancel_session(uuid, uuid, text) from public, anon, authenticated;
grant execute on function public.cancel_session(uuid, uuid, text) to service_role;
revoke all on function public.expire_sessions(interval, interval, integer) from public, anon, authenticated;
grant execute on function public.expire_sessions(interval, interval, integer) to service_role;

comment on function public.accept_assignment(uuid, uuid) is
  'A mechanic takes a queued session: the assignment becomes accepted, the mechanic a participant, '
  'the session waiting, with an assigned event. Under the customer''s lock, so the first active '
  'mechanic wins and the rest get 409 ASSIGNMENT_TAKEN, and accept and expiry never both happen; '
  'accepting again answers changed false. Routing: private.mechanic_may_take. service_role only: '
  'the caller vouches for mechanic_id.';
comment on function public.mechanic_queue_for(uuid, integer) is
  'The queued sessions this mechanic may accept (the same routing rules accept_assignment '
  'applies), urgent first, newest first, at most max_items. service_role only.';
comment on function public.start_session(uuid, uuid) is
  'The assigned mechanic starts a waiting session: live, with a started event. Idempotent; 409 '
  'INVALID_TRANSITION from any other status. service_role only.';
comment on function public.complete_session(uuid, uuid) is
  'The assigned mechanic ends a live session: completed, with an ended event, and the customer may '
  'start a new one at once. Idempotent; 409 INVALID_TRANSITION from any other status. '
  'service_role only.';
comment on function public.release_session(uuid, uuid) is
  'The assigned mechanic gives a waiting session back before starting: the accepted assignment is '
  'cancelled (metadata.released_at), a fresh queued one is offered from now (the expiry clock '
  'restarts), the mechanic leaves session_participants (the released event keeps who it was), and '
  'the session is pending again. service_role only.';
comment on function public.cancel_session(uuid, uuid, text) is
  'The customer cancels their own pending or waiting session (another customer''s is 404; live or '
  'ended is 409 SESSION_NOT_CANCELLABLE): cancelled with its open offers, a cancelled event, and the '
  'refund in the same transaction (stripe_outbox or credits, with a refunded event). Cancelling '
  'again answers changed false and refunds nothing more. service_role only.';
comment on function public.expire_sessions(interval, interval, integer) is
  'The sweep: pending sessions whose queued assignment was offered longer ago than older_than '
  '(urgent_older_than for urgent ones) become expired, with their offers, an expired event and the '
  'same refunds as a cancel. Safe to run from many places at once: it only tries locks (customer '
  'advisory lock, row lock skip locked) and leaves what is busy to the next sweep, so sweeps never '
  'wait for each other or for a request, and each session expires and is refunded once. '
  'Runs from pg_cron where available, the service and the CLI. service_role only.';
