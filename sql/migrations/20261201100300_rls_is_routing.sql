-- Row level security says what routing says, and nothing is written around the functions.
-- A mechanic reading session_assignments straight through PostgREST (supabase-js in a browser) sees
-- exactly the offers their queue lists (private.in_my_queue asks private.mechanic_may_take, as
-- mechanic_queue_for does), not every queued offer; and anon and authenticated write no table
-- directly: intakes go through submit_intake / create_session_record like everything else.

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

-- authenticated may now look into schema private, for this one function: nothing else there is
-- executable by the API roles, now or later.
revoke all on all functions in schema private from public;
alter default privileges in schema private revoke execute on functions from public;
grant usage on schema private to authenticated;
grant execute on function private.in_my_queue(uuid) to authenticated;

drop policy "active mechanics read queued assignments" on public.session_assignments;
create policy "mechanics read the offers their queue lists" on public.session_assignments
  for select to authenticated
  using (private.in_my_queue(id));

drop policy "customers create own intakes" on public.intakes;
revoke insert, update, delete, truncate, references, trigger on all tables in schema public from anon, authenticated;
-- Tables created later start the same way (Supabase grants everything on new tables by default).
alter default privileges in schema public
  revoke insert, update, delete, truncate, references, trigger on tables from anon, authenticated;
