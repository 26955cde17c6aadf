-- The routing facts the code branches on become typed columns on the rows they describe: the
-- session keeps what the customer asked for (urgent, is_specialist, routing_type, preferred mechanic),
-- each offer (session_assignments) whom it is for and how it is routed, so that an offer can change
-- (a decline) while the request stays as it was. Existing rows move out of metadata here; routing,
-- the queue and accept read the columns, and create_session_record writes them (its next release).

alter table public.sessions
  add column urgent boolean not null default false,
  add column is_specialist boolean not null default false,
  add column routing_type text not null default 'broadcast'
    constraint sessions_routing_type_check
    check (routing_type in ('broadcast', 'workshop_only', 'hybrid', 'priority_broadcast')),
  add column preferred_mechanic_id uuid references public.mechanics (user_id) on delete set null;
create index sessions_preferred_mechanic_id_idx on public.sessions (preferred_mechanic_id);
comment on column public.sessions.routing_type is
  'How the customer asked for the session to be offered; each offer''s own routing is on session_assignments.';
comment on column public.sessions.preferred_mechanic_id is 'The mechanic the customer asked for by name, if any.';

alter table public.session_assignments
  add column routing_type text not null default 'broadcast'
    constraint session_assignments_routing_type_check
    check (routing_type in ('broadcast', 'workshop_only', 'hybrid', 'priority_broadcast')),
  add column preferred_mechanic_id uuid references public.mechanics (user_id) on delete set null;
create index session_assignments_preferred_mechanic_id_idx on public.session_assignments (preferred_mechanic_id);
comment on column public.session_assignments.routing_type is
  'How this offer is routed (private.mechanic_may_take): the session''s, until a decline re-offers it to everyone.';
comment on column public.session_assignments.preferred_mechanic_id is
  'The mechanic this offer is made to by name (who may decline it), if any.';

update public.sessions s
set urgent = coalesce((s.metadata ->> 'urgent')::boolean, false),
    is_specialist = coalesce((s.metadata ->> 'is_specialist')::boolean, false),
    routing_type = coalesce(s.metadata ->> 'routing_type', 'broadcast'),
    preferred_mechanic_id = (
      select m.user_id from public.mechanics m where m.user_id::text = s.metadata ->> 'preferred_mechanic_id'
    ),
    metadata = s.metadata - array['urgent', 'is_specialist', 'routing_type', 'preferred_mechanic_id']
where s.metadata ?| array['urgent', 'is_specialist', 'routing_type', 'preferred_mechanic_id'];

update public.session_assignments a
set routing_type = s.routing_type,
    preferred_mechanic_id = (
      select m.user_id from public.mechanics m where m.user_id::text = a.metadata ->> 'preferred_mechanic_id'
    ),
    metadata = a.metadata - 'preferred_mechanic_id'
from public.sessions s
where s.id = a.session_id;

-- The mechanics' view of the queue reads the column too (its type changes: recreated).
drop view public.mechanic_queue;
create view public.mechanic_queue with (security_invoker = true) as
  select
    a.id as assignment_id,
    a.session_id,
    a.session_type,
    a.plan,
    a.urgent,
    a.offered_at,
    now() - a.offered_at as age,
    a.routing_type,
    a.preferred_mechanic_id
  from public.session_assignments a
  where a.status = 'queued'
  order by a.urgent desc, a.offered_at desc;
comment on view public.mechanic_queue is
  'Queued sessions, newest urgent first. security_invoker: the read policy on session_assignments '
  'shows each mechanic exactly the offers mechanic_queue_for lists.';
revoke all on table public.mechanic_queue from anon, authenticated;
grant select on table public.mechanic_queue to authenticated;

create or replace function private.mechanic_may_take(
  m public.mechanics, s public.sessions, a public.session_assignments, as_of timestamptz
) returns boolean
language sql
immutable
set search_path = ''
as $$
  select coalesce((m).active
    and (m).user_id <> (s).customer_user_id
    and (
      (m).user_id = (a).preferred_mechanic_id
      or (
        (not (s).is_specialist or (m).is_specialist)
        and case (a).routing_type
          when 'workshop_only' then (a).preferred_mechanic_id is null
          when 'priority_broadcast' then
            (a).preferred_mechanic_id is null or as_of >= (a).offered_at + interval '5 minutes'
          when 'hybrid' then (m).is_specialist
          else true
        end
      )
    ), false);
$$;
comment on function private.mechanic_may_take(
  public.mechanics, public.sessions, public.session_assignments, timestamptz
) is
  'The routing rules, defined once: accept_assignment, mechanic_queue_for and the read policy on '
  'session_assignments (private.in_my_queue) all ask here. Only active mechanics, never the customer '
  'themself. The offer''s preferred_mechanic_id may always take it. Anyone else: a session with '
  'is_specialist needs a specialist, and by the offer''s routing_type: broadcast, any mechanic; '
  'workshop_only, nobody but the preferred one; priority_broadcast, the preferred one alone for 5 '
  'minutes after offered_at, then anyone; hybrid, any specialist. Without a preferred mechanic, '
  'workshop_only and priority_broadcast act as broadcast and hybrid as specialists-only. Never null.';

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
      'routing_type', a.routing_type,
      'preferred', coalesce(a.preferred_mechanic_id = v_mechanic.user_id, false)
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
comment on function public.mechanic_queue_for(uuid, integer) is
  'The queued sessions this mechanic may accept (private.mechanic_may_take on the offer''s typed '
  'routing columns, as accept_assignment and the session_assignments read policy), urgent first, '
  'newest first, at most max_items. service_role only.';

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
      pg_catalog.jsonb_build_object('routing_type', v_assignment.routing_type));
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
comment on function public.accept_assignment(uuid, uuid) is
  'A mechanic takes a queued session: the assignment becomes accepted, the mechanic a participant, '
  'the session waiting, with an assigned event. Under the customer''s lock, so the first active '
  'mechanic wins and the rest get 409 ASSIGNMENT_TAKEN, and accept and expiry never both happen; '
  'accepting again answers changed false. Routing: private.mechanic_may_take on the offer''s '
  'routing_type and preferred_mechanic_id. service_role only: the caller vouches for mechanic_id.';

create or replace function private.requeue_session(
  session public.sessions, assignment public.session_assignments, user_id uuid, reason text
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_fresh uuid;
begin
  update public.session_assignments a
  set status = 'cancelled',
      metadata = a.metadata || pg_catalog.jsonb_build_object(
        'released_at', pg_catalog.now(), 'reason', requeue_session.reason)
  where a.id = (requeue_session.assignment).id;
  -- A fresh offer: offered_at is now, so the expiry clock (and a priority window) starts again.
  insert into public.session_assignments
    (session_id, status, session_type, plan, urgent, routing_type, preferred_mechanic_id, offered_at)
  values ((requeue_session.session).id, 'queued', (requeue_session.assignment).session_type,
          (requeue_session.assignment).plan, (requeue_session.assignment).urgent,
          (requeue_session.assignment).routing_type, (requeue_session.assignment).preferred_mechanic_id,
          pg_catalog.now())
  returning id into v_fresh;
  delete from public.session_participants p
  where p.session_id = (requeue_session.session).id
    and p.user_id = (requeue_session.assignment).mechanic_id and p.role = 'mechanic';
  perform private.move_session(requeue_session.session, 'pending', 'released', requeue_session.user_id,
    pg_catalog.jsonb_build_object(
      'assignment_id', (requeue_session.assignment).id, 'new_assignment_id', v_fresh,
      'mechanic_id', (requeue_session.assignment).mechanic_id, 'reason', requeue_session.reason));
end;
$$;
comment on function private.requeue_session(public.sessions, public.session_assignments, uuid, text) is
  'A waiting session back to the queue, for release_session (reason released) and the sweep''s '
  'no-show (reason no_show): the accepted assignment is cancelled (metadata.released_at, reason), a '
  'fresh queued one with the same routing is offered from now (the expiry clock restarts), the '
  'mechanic leaves session_participants and a released event keeps who it was and why. Nothing is '
  'refunded: the session goes on. The caller holds the customer''s lock.';

create or replace function public.release_session(session_id uuid, mechanic_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
  v_assignment public.session_assignments%rowtype;
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
  perform private.requeue_session(v_session, v_assignment, release_session.mechanic_id, 'released');
  return private.session_state(v_session.id, true);
end;
$$;
comment on function public.release_session(uuid, uuid) is
  'The assigned mechanic gives a waiting session back before starting (private.requeue_session, '
  'reason released): a fresh queued offer from now, the mechanic no longer a participant, the '
  'session pending again. Releasing again (or after a no-show) answers changed false. '
  'service_role only.';

revoke all on function private.requeue_session(public.sessions, public.session_assignments, uuid, text) from public;
