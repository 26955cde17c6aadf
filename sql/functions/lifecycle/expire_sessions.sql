create or replace function public.expire_sessions(max_sessions integer default 500)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_limits public.session_limits%rowtype;
  v_candidate record;
  v_session public.sessions%rowtype;
  v_assignment public.session_assignments%rowtype;
  v_due jsonb;
  v_expired uuid[] := '{}'::uuid[];
  v_released uuid[] := '{}'::uuid[];
  v_ended uuid[] := '{}'::uuid[];
  v_skipped integer := 0;
begin
  if max_sessions is null or max_sessions not between 1 and 10000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_sessions must be between 1 and 10000');
  end if;
  select l.* into v_limits from public.session_limits l;

  for v_candidate in
    (select s.id, s.customer_user_id
     from public.sessions s
     join public.session_assignments a on a.session_id = s.id and a.status = 'queued'
     where s.status = 'pending'
       and a.offered_at < pg_catalog.now() - pg_catalog.make_interval(mins => case when a.urgent
             then v_limits.urgent_pending_expiry_minutes else v_limits.pending_expiry_minutes end)
     order by a.offered_at
     limit max_sessions)
    union all
    (select s.id, s.customer_user_id
     from public.sessions s
     join public.session_assignments a on a.session_id = s.id and a.status = 'accepted'
     where s.status = 'waiting'
       and a.accepted_at < pg_catalog.now() - pg_catalog.make_interval(mins => v_limits.no_show_minutes)
     order by a.accepted_at
     limit max_sessions)
    union all
    (select s.id, s.customer_user_id
     from public.sessions s
     join public.plans p on p.code = s.plan
     where s.status = 'live'
       and s.started_at < pg_catalog.now()
         - pg_catalog.make_interval(mins => p.duration_minutes + v_limits.live_grace_minutes)
     order by s.started_at
     limit max_sessions)
  loop
    -- Never wait: a customer or session another transaction holds is left for the next sweep.
    if not private.lock_customer(v_candidate.customer_user_id, false) then
      v_skipped := v_skipped + 1;
      continue;
    end if;
    select s.* into v_session from public.sessions s where s.id = v_candidate.id for update skip locked;
    if not found then
      v_skipped := v_skipped + 1;
      continue;
    end if;
    -- Under the lock, look again: an accept, start, complete, release or cancel may have committed since.
    v_due := private.session_overdue(v_session, v_limits, pg_catalog.now());
    case v_due ->> 'reason'
      when 'expired' then
        perform private.end_unstarted_session(v_session, 'expired', null, v_due - 'reason');
        v_expired := v_expired || v_session.id;
      when 'no_show' then
        select a.* into v_assignment
        from public.session_assignments a
        where a.session_id = v_session.id and a.status = 'accepted'
        for update;
        perform private.requeue_session(v_session, v_assignment, null, 'no_show');
        v_released := v_released || v_session.id;
      when 'time_limit' then
        -- Delivered: the session ran its time, so it ends as completed and nothing is refunded.
        perform private.move_session(v_session, 'completed', 'ended', null, v_due);
        v_ended := v_ended || v_session.id;
      else
        null;
    end case;
  end loop;

  return pg_catalog.jsonb_build_object(
    'expired', pg_catalog.cardinality(v_expired),
    'session_ids', pg_catalog.to_jsonb(v_expired),
    'no_shows', pg_catalog.cardinality(v_released),
    'no_show_session_ids', pg_catalog.to_jsonb(v_released),
    'timed_out', pg_catalog.cardinality(v_ended),
    'timed_out_session_ids', pg_catalog.to_jsonb(v_ended),
    'skipped', v_skipped,
    'limits', pg_catalog.to_jsonb(v_limits) - 'id'
  );
end;
$$;
comment on function public.expire_sessions(integer) is
  'The sweep, for every limit in public.session_limits at once: a pending session nobody accepted in '
  'time expires (its offers too, an expired event, the same refunds as a cancel); a waiting one its '
  'mechanic did not start in time goes back to the queue (private.requeue_session, reason no_show, '
  'nothing refunded); a live one past its plan''s duration plus the grace is completed with an ended '
  'event of reason time_limit (delivered: nothing refunded). Takes no limits as arguments: pg_cron, '
  '`pysvc serve` and `pysvc sessions expire` all call it bare, so they obey the same row. Safe to run '
  'from many places at once: it only tries locks (customer advisory lock, row lock skip locked), '
  'leaves what is busy to the next sweep and decides each session again under its lock '
  '(private.session_overdue), so each session moves and is refunded once. service_role only.';
