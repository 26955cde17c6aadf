create or replace function private.session_overdue(
  session public.sessions, limits public.session_limits, as_of timestamptz
) returns jsonb
language sql
stable
set search_path = ''
as $$
  select case (session).status
    when 'pending' then (
      select pg_catalog.jsonb_build_object('reason', 'expired', 'offered_at', a.offered_at, 'urgent', a.urgent,
        'limit_minutes', l.minutes)
      from public.session_assignments a
      cross join lateral (select case when a.urgent then (limits).urgent_pending_expiry_minutes
                                      else (limits).pending_expiry_minutes end as minutes) l
      where a.session_id = (session).id and a.status = 'queued'
        and a.offered_at < as_of - pg_catalog.make_interval(mins => l.minutes)
    )
    when 'waiting' then (
      select pg_catalog.jsonb_build_object('reason', 'no_show', 'accepted_at', a.accepted_at,
        'limit_minutes', (limits).no_show_minutes)
      from public.session_assignments a
      where a.session_id = (session).id and a.status = 'accepted'
        and a.accepted_at < as_of - pg_catalog.make_interval(mins => (limits).no_show_minutes)
    )
    when 'live' then (
      select pg_catalog.jsonb_build_object('reason', 'time_limit', 'started_at', (session).started_at,
        'limit_minutes', p.duration_minutes + (limits).live_grace_minutes)
      from public.plans p
      where p.code = (session).plan
        and (session).started_at < as_of
          - pg_catalog.make_interval(mins => p.duration_minutes + (limits).live_grace_minutes)
    )
  end;
$$;
comment on function private.session_overdue(public.sessions, public.session_limits, timestamptz) is
  'Whether a session has outstayed a limit, and which: a pending one offered longer ago than the '
  'pending expiry (urgent ones: the urgent expiry) is expired; a waiting one accepted longer ago than '
  'the no-show limit is no_show; a live one started longer ago than its plan''s duration plus the '
  'live grace is time_limit. The reason with its times and limit, or null. What expire_sessions '
  'checks under the lock, after its scan found the session.';
