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
