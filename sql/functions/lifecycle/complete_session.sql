create or replace function public.complete_session(session_id uuid, mechanic_id uuid) returns jsonb
language sql
security definer
set search_path = ''
as $$
  select private.advance_session(complete_session.session_id, complete_session.mechanic_id,
    'live', 'completed', 'ended');
$$;

comment on function public.complete_session(uuid, uuid) is
  'The assigned mechanic ends a live session: completed, with an ended event, and the customer may '
  'start a new one at once. Idempotent; 409 INVALID_TRANSITION from any other status. '
  'service_role only.';
