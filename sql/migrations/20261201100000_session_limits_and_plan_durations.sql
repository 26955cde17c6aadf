-- Every limit on how long a session may wait lives in one row the database and the service both
-- read: pg_cron calls public.expire_sessions() without arguments, and so do `pysvc serve` and
-- `pysvc sessions expire`; operators change it with `pysvc sessions limits --set` (public.set_session_limits).
-- Plans get the length of the consultation they sell, and sessions the time they started, so that a
-- live session can end on its own.

create table public.session_limits (
  id boolean primary key default true check (id),
  pending_expiry_minutes integer not null default 30
    constraint session_limits_pending_expiry_minutes_check check (pending_expiry_minutes between 1 and 10080),
  urgent_pending_expiry_minutes integer not null default 10
    constraint session_limits_urgent_pending_expiry_minutes_check
    check (urgent_pending_expiry_minutes between 1 and 10080),
  no_show_minutes integer not null default 10
    constraint session_limits_no_show_minutes_check check (no_show_minutes between 1 and 1440),
  live_grace_minutes integer not null default 15
    constraint session_limits_live_grace_minutes_check check (live_grace_minutes between 0 and 1440),
  updated_at timestamptz not null default now()
);
insert into public.session_limits default values;
comment on table public.session_limits is
  'The one row of session limits (id is always true): a pending session nobody accepted expires after '
  'pending_expiry_minutes (urgent ones urgent_pending_expiry_minutes); a waiting one its mechanic has '
  'not started goes back to the queue after no_show_minutes; a live one ends after its plan''s '
  'duration_minutes plus live_grace_minutes. Read by public.expire_sessions, wherever it runs.';
alter table public.session_limits enable row level security;
revoke all on table public.session_limits from anon, authenticated;

alter table public.plans
  add column duration_minutes integer not null default 30
    constraint plans_duration_minutes_check check (duration_minutes between 5 and 480);
comment on column public.plans.duration_minutes is
  'How long the consultation lasts; a live session ends on its own this long (plus the live grace) '
  'after it started.';
update public.plans set duration_minutes = case code
  when 'free' then 15 when 'trial' then 15 when 'trial-free' then 15 when 'quick' then 15
  when 'standard' then 30 when 'diagnostic' then 60 else duration_minutes end;

alter table public.sessions add column started_at timestamptz;
comment on column public.sessions.started_at is 'When the mechanic started the session (live), set by start_session.';
update public.sessions s set started_at = (
  select e.created_at from public.session_events e
  where e.session_id = s.id and e.event_type = 'started' order by e.id desc limit 1
) where s.status in ('live', 'completed');
-- The sweep's scans of sessions under way (pending ones are found through their queued offer).
create index sessions_in_progress_idx on public.sessions (status, started_at) where status in ('waiting', 'live');

create or replace function public.get_session_limits() returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select pg_catalog.to_jsonb(l) - 'id' from public.session_limits l;
$$;
comment on function public.get_session_limits() is
  'The session limits every sweep uses (public.session_limits, one row), as JSON: what `pysvc sessions '
  'limits` prints. service_role only.';

create or replace function public.set_session_limits(
  pending_expiry_minutes integer default null,
  urgent_pending_expiry_minutes integer default null,
  no_show_minutes integer default null,
  live_grace_minutes integer default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_constraint text;
begin
  begin
    update public.session_limits l
    set pending_expiry_minutes = coalesce(set_session_limits.pending_expiry_minutes, l.pending_expiry_minutes),
        urgent_pending_expiry_minutes =
          coalesce(set_session_limits.urgent_pending_expiry_minutes, l.urgent_pending_expiry_minutes),
        no_show_minutes = coalesce(set_session_limits.no_show_minutes, l.no_show_minutes),
        live_grace_minutes = coalesce(set_session_limits.live_grace_minutes, l.live_grace_minutes),
        updated_at = pg_catalog.now();
  exception when check_violation then
    get stacked diagnostics v_constraint = constraint_name;
    perform private.raise_api_error(422, 'INVALID_ARGUMENT',
      pg_catalog.format('%s is out of range (pending expiry 1-10080, no-show 1-1440, live grace 0-1440 minutes)',
        pg_catalog.regexp_replace(v_constraint, '^session_limits_(.*)_check$', '\1')));
  end;
  return public.get_session_limits();
end;
$$;
comment on function public.set_session_limits(integer, integer, integer, integer) is
  'Changes the session limits (null leaves one as it is) in the one row both pg_cron''s sweep and the '
  'service''s read, so a change holds everywhere at the next sweep; a value out of range is 422 '
  'INVALID_ARGUMENT naming it (the table''s CHECKs). What `pysvc sessions limits --set` calls. '
  'service_role only.';

revoke all on function public.get_session_limits() from public, anon, authenticated;
grant execute on function public.get_session_limits() to service_role;
revoke all on function public.set_session_limits(integer, integer, integer, integer) from public, anon, authenticated;
grant execute on function public.set_session_limits(integer, integer, integer, integer) to service_role;
