create or replace function private.in_my_queue(assignment_id uuid) returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((
    select private.mechanic_may_take(m, s, a, pg_catalog.now())
    from public.session_assignments a
    join public.sessions s on s.id = a.session_id
    join public.mechanics m on m.user_id = (select auth.uid())
    where a.id = in_my_queue.assignment_id and a.status = 'queued' and s.status = 'pending'
  ), false);
$$;
comment on function private.in_my_queue(uuid) is
  'The read policy on session_assignments: true when the calling user (auth.uid()) is a mechanic whose '
  'queue lists this offer, by the same conditions as mechanic_queue_for (queued, session pending, '
  'private.mechanic_may_take now). SECURITY DEFINER because the caller may not read the session or '
  'mechanic rows it needs; executable by authenticated, and only answers about the caller.';
