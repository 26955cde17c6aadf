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
