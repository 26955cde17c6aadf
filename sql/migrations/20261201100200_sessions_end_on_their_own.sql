-- No session holds a customer forever: the sweep also sends a no-show (a waiting session its
-- mechanic did not start in time) back to the queue and ends a live session that ran past its plan's
-- duration plus a grace, with every limit read from public.session_limits. A session starts only once
-- the customer has signed the waiver, and the mechanic an offer is made to by name may decline it.

alter table public.session_events drop constraint session_events_event_type_check;
alter table public.session_events add constraint session_events_event_type_check check (
  event_type in (
    'created', 'assigned', 'started', 'ended', 'cancelled', 'refunded', 'expired', 'released',
    'disputed', 'declined'
  )
);

-- The sweep takes no limits any more: they are the row in public.session_limits.
drop function public.expire_sessions(interval, interval, integer);

create or replace function private.session_overdue(
  session public.sessions, limits public.session_limits, as_of timestamptz
) returns jsonb
language sql
stable
set search_path = ''
as $$
  select case (session).status
    when 'pending' then (
      select pg_catalog.jsonb_build_object('reason', 'expired', 'offered_at', a.offered_at, 'urgent', a.urgent,
        'limit_minutes', l.minutes)
      from public.session_assignments a
      cross join lateral (select case when a.urgent then (limits).urgent_pending_expiry_minutes
                                      else (limits).pending_expiry_minutes end as minutes) l
      where a.session_id = (session).id and a.status = 'queued'
        and a.offered_at < as_of - pg_catalog.make_interval(mins => l.minutes)
    )
    when 'waiting' then (
      select pg_catalog.jsonb_build_object('reason', 'no_show', 'accepted_at', a.accepted_at,
        'limit_minutes', (limits).no_show_minutes)
      from public.session_assignments a
      where a.session_id = (session).id and a.status = 'accepted'
        and a.accepted_at < as_of - pg_catalog.make_interval(mins => (limits).no_show_minutes)
    )
    when 'live' then (
      select pg_catalog.jsonb_build_object('reason', 'time_limit', 'started_at', (session).started_at,
        'limit_minutes', p.duration_minutes + (limits).live_grace_minutes)
      from public.plans p
      where p.code = (session).plan
        and (session).started_at < as_of
          - pg_catalog.make_interval(mins => p.duration_minutes + (limits).live_grace_minutes)
    )
  end;
$$;
comment on function private.session_overdue(public.sessions, public.session_limits, timestamptz) is
  'Whether a session has outstayed a limit, and which: a pending one offered longer ago than the '
  'pending expiry (urgent ones: the urgent expiry) is expired; a waiting one accepted longer ago than '
  'the no-show limit is no_show; a live one started longer ago than its plan''s duration plus the '
  'live grace is time_limit. The reason with its times and limit, or null. What expire_sessions '
  'checks under the lock, after its scan found the session.';

create or replace function public.expire_sessions(max_sessions integer default 500)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_limits public.session_limits%rowtype;
  v_candidate record;
  v_session public.sessions%rowtype;
  v_assignment public.session_assignments%rowtype;
  v_due jsonb;
  v_expired uuid[] := '{}';
  v_released uuid[] := '{}';
  v_ended uuid[] := '{}';
  v_skipped integer := 0;
begin
  if max_sessions is null or max_sessions not between 1 and 10000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_sessions must be between 1 and 10000');
  end if;
  select l.* into v_limits from public.session_limits l;

  for v_candidate in
    (select s.id, s.customer_user_id
     from public.sessions s
     join public.session_assignments a on a.session_id = s.id and a.status = 'queued'
     where s.status = 'pending'
       and a.offered_at < pg_catalog.now() - pg_catalog.make_interval(mins => case when a.urgent
             then v_limits.urgent_pending_expiry_minutes else v_limits.pending_expiry_minutes end)
     order by a.offered_at
     limit max_sessions)
    union all
    (select s.id, s.customer_user_id
     from public.sessions s
     join public.session_assignments a on a.session_id = s.id and a.status = 'accepted'
     where s.status = 'waiting'
       and a.accepted_at < pg_catalog.now() - pg_catalog.make_interval(mins => v_limits.no_show_minutes)
     order by a.accepted_at
     limit max_sessions)
    union all
    (select s.id, s.customer_user_id
     from public.sessions s
     join public.plans p on p.code = s.plan
     where s.status = 'live'
       and s.started_at < pg_catalog.now()
         - pg_catalog.make_interval(mins => p.duration_minutes + v_limits.live_grace_minutes)
     order by s.started_at
     limit max_sessions)
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
    -- Under the lock, look again: an accept, start, complete, release or cancel may have committed since.
    v_due := private.session_overdue(v_session, v_limits, pg_catalog.now());
    case v_due ->> 'reason'
      when 'expired' then
        perform private.end_unstarted_session(v_session, 'expired', null, v_due - 'reason');
        v_expired := v_expired || v_session.id;
      when 'no_show' then
        select a.* into v_assignment
        from public.session_assignments a
        where a.session_id = v_session.id and a.status = 'accepted'
        for update;
        perform private.requeue_session(v_session, v_assignment, null, 'no_show');
        v_released := v_released || v_session.id;
      when 'time_limit' then
        -- Delivered: the session ran its time, so it ends as completed and nothing is refunded.
        perform private.move_session(v_session, 'completed', 'ended', null, v_due);
        v_ended := v_ended || v_session.id;
      else
        null;
    end case;
  end loop;

  return pg_catalog.jsonb_build_object(
    'expired', pg_catalog.cardinality(v_expired),
    'session_ids', pg_catalog.to_jsonb(v_expired),
    'no_shows', pg_catalog.cardinality(v_released),
    'no_show_session_ids', pg_catalog.to_jsonb(v_released),
    'timed_out', pg_catalog.cardinality(v_ended),
    'timed_out_session_ids', pg_catalog.to_jsonb(v_ended),
    'skipped', v_skipped,
    'limits', pg_catalog.to_jsonb(v_limits) - 'id'
  );
end;
$$;
comment on function public.expire_sessions(integer) is
  'The sweep, for every limit in public.session_limits at once: a pending session nobody accepted in '
  'time expires (its offers too, an expired event, the same refunds as a cancel); a waiting one its '
  'mechanic did not start in time goes back to the queue (private.requeue_session, reason no_show, '
  'nothing refunded); a live one past its plan''s duration plus the grace is completed with an ended '
  'event of reason time_limit (delivered: nothing refunded). Takes no limits as arguments: pg_cron, '
  '`pysvc serve` and `pysvc sessions expire` all call it bare, so they obey the same row. Safe to run '
  'from many places at once: it only tries locks (customer advisory lock, row lock skip locked), '
  'leaves what is busy to the next sweep and decides each session again under its lock '
  '(private.session_overdue), so each session moves and is refunded once. service_role only.';

create or replace function public.start_session(session_id uuid, mechanic_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
  v_state jsonb;
begin
  v_session := private.lock_session(start_session.session_id);
  if v_session.status = 'waiting'
     and private.assigned_mechanic(v_session.id) = start_session.mechanic_id
     and not exists (
       select 1 from public.intakes i where i.id = v_session.intake_id and i.waiver_signed_at is not null
     ) then
    perform private.raise_api_error(409, 'WAIVER_NOT_SIGNED', 'the customer has not signed the waiver yet',
      pg_catalog.jsonb_build_object('intake_id', v_session.intake_id));
  end if;
  v_state := private.advance_session(start_session.session_id, start_session.mechanic_id,
    'waiting', 'live', 'started');
  if (v_state ->> 'changed')::boolean then
    update public.sessions s set started_at = pg_catalog.now() where s.id = v_session.id;
  end if;
  return v_state;
end;
$$;
comment on function public.start_session(uuid, uuid) is
  'The assigned mechanic starts a waiting session: live from now (started_at, which the live time '
  'limit counts from), with a started event. 409 WAIVER_NOT_SIGNED until the customer''s intake has '
  'waiver_signed_at, whatever the session was paid with. Idempotent; 409 INVALID_TRANSITION from '
  'any other status. service_role only.';

create or replace function public.decline_assignment(assignment_id uuid, mechanic_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_mechanic public.mechanics%rowtype;
  v_assignment public.session_assignments%rowtype;
  v_session public.sessions%rowtype;
  v_routing text;
  v_fresh uuid;
begin
  v_mechanic := private.require_active_mechanic(decline_assignment.mechanic_id);
  if decline_assignment.assignment_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'assignment_id is required');
  end if;
  select a.* into v_assignment from public.session_assignments a where a.id = decline_assignment.assignment_id;
  if not found then
    perform private.raise_api_error(404, 'ASSIGNMENT_NOT_FOUND', 'no such assignment');
  end if;

  v_session := private.lock_session(v_assignment.session_id);
  select a.* into v_assignment
  from public.session_assignments a
  where a.id = decline_assignment.assignment_id
  for update;

  if v_assignment.preferred_mechanic_id is distinct from v_mechanic.user_id then
    perform private.raise_api_error(403, 'NOT_PREFERRED_MECHANIC',
      'only the mechanic this offer is made to by name may decline it');
  end if;
  if v_assignment.status = 'declined' then
    perform private.raise_api_error(409, 'ASSIGNMENT_ALREADY_DECLINED', 'you already declined this offer',
      pg_catalog.jsonb_build_object('session_id', v_session.id));
  end if;
  if v_assignment.status <> 'queued' or v_session.status <> 'pending' then
    perform private.raise_api_error(409, 'ASSIGNMENT_CLOSED', 'this assignment is no longer offered',
      pg_catalog.jsonb_build_object(
        'assignment_status', v_assignment.status, 'session_status', v_session.status));
  end if;

  -- Offered to everyone at once (hybrid: every specialist), from now.
  v_routing := case when v_assignment.routing_type = 'hybrid' then 'hybrid' else 'broadcast' end;
  update public.session_assignments a
  set status = 'declined', mechanic_id = v_mechanic.user_id
  where a.id = v_assignment.id;
  insert into public.session_assignments
    (session_id, status, session_type, plan, urgent, routing_type, preferred_mechanic_id, offered_at)
  values (v_session.id, 'queued', v_assignment.session_type, v_assignment.plan, v_assignment.urgent,
          v_routing, null, pg_catalog.now())
  returning id into v_fresh;
  perform private.log_event(v_session.id, 'declined', v_mechanic.user_id,
    pg_catalog.jsonb_build_object('assignment_id', v_assignment.id, 'new_assignment_id', v_fresh,
      'from_routing', v_assignment.routing_type, 'to_routing', v_routing));
  return private.session_state(v_session.id, true);
end;
$$;
comment on function public.decline_assignment(uuid, uuid) is
  'The mechanic an offer is made to by name (its preferred_mechanic_id; anyone else is 403 '
  'NOT_PREFERRED_MECHANIC) turns it down: the offer becomes declined (mechanic_id says by whom) and a '
  'fresh queued offer with no preferred mechanic is made from now, routed broadcast (hybrid stays '
  'specialists-only), so a priority_broadcast or workshop_only session is offered to everyone at '
  'once; nothing is refunded. A declined event records it. Declining again is 409 '
  'ASSIGNMENT_ALREADY_DECLINED; an offer already taken or closed, 409 ASSIGNMENT_CLOSED. '
  'service_role only.';

revoke all on function private.session_overdue(public.sessions, public.session_limits, timestamptz) from public;
revoke all on function public.expire_sessions(integer) from public, anon, authenticated;
grant execute on function public.expire_sessions(integer) to service_role;
revoke all on function public.decline_assignment(uuid, uuid) from public, anon, authenticated;
grant execute on function public.decline_assignment(uuid, uuid) to service_role;
