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
