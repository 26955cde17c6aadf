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

comment on function public.release_session(uuid, uuid) is
  'The assigned mechanic gives a waiting session back before starting: the accepted assignment is '
  'cancelled (metadata.released_at), a fresh queued one is offered from now (the expiry clock '
  'restarts), the mechanic leaves session_participants (the released event keeps who it was), and '
  'the session is pending again. service_role only.';
