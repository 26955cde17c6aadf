create or replace function private.session_state(session_id uuid, changed boolean) returns jsonb
language sql
stable
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'session_id', s.id,
    'status', s.status,
    'session_type', s.type,
    'plan', s.plan,
    'customer_id', s.customer_user_id,
    'mechanic_id', case when a.status = 'accepted' then a.mechanic_id end,
    'assignment_id', a.id,
    'assignment_status', a.status,
    'accepted_at', case when a.status = 'accepted' then a.accepted_at end,
    'updated_at', s.updated_at,
    'refund', (
      select e.metadata from public.session_events e
      where e.session_id = s.id and e.event_type = 'refunded'
      order by e.id desc limit 1
    ),
    'changed', session_state.changed
  )
  from public.sessions s
  left join lateral (
    select a.* from public.session_assignments a
    where a.session_id = s.id
    order by (a.status = 'accepted') desc, (a.status = 'queued') desc, a.created_at desc, a.offered_at desc
    limit 1
  ) a on true
  where s.id = session_state.session_id;
$$;

comment on function private.session_state(uuid, boolean) is
  'What every transition answers: the session, its current assignment (the accepted one, else the '
  'queued one, else the latest), its mechanic, the refund recorded (a refunded event''s metadata) '
  'and whether this call changed anything.';
