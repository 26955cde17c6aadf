create or replace function private.log_event(
  session_id uuid, event_type text, user_id uuid, metadata jsonb default '{}'
) returns void
language sql
set search_path = ''
as $$
  insert into public.session_events (session_id, event_type, user_id, metadata)
  values (log_event.session_id, log_event.event_type, log_event.user_id,
          coalesce(log_event.metadata, '{}'::jsonb));
$$;

comment on function private.log_event(uuid, text, uuid, jsonb) is
  'Appends one row to a session''s history.';
