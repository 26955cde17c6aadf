create or replace function public.start_session(session_id uuid, mechanic_id uuid) returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.advance_session(start_session.session_id, start_session.mechanic_id,
    'waiting', 'live', 'started');
$$;

comment on function public.start_session(uuid, uuid) is
  'The assigned mechanic starts a waiting session: live, with a started event. Idempotent; 409 '
  'INVALID_TRANSITION from any other status. service_role only.';
