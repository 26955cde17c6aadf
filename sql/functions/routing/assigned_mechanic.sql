create or replace function private.assigned_mechanic(session_id uuid) returns uuid
language sql
stable
set search_path = ''
as $$
  select a.mechanic_id from public.session_assignments a
  where a.session_id = assigned_mechanic.session_id and a.status = 'accepted';
$$;

comment on function private.assigned_mechanic(uuid) is
  'The mechanic holding the session''s accepted assignment (at most one: a unique index), or null.';
