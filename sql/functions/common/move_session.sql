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
