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
