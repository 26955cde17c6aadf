create or replace function public.expire_sessions(
  older_than interval default '30 minutes',
  urgent_older_than interval default '10 minutes',
  max_sessions integer default 500
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_candidate record;
  v_session public.sessions%rowtype;
  v_assignment public.session_assignments%rowtype;
  v_limit interval;
  v_expired uuid[] := '{}';
  v_skipped integer := 0;
begin
  if older_than is null or urgent_older_than is null
     or older_than <= interval '0' or urgent_older_than <= interval '0' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'older_than and urgent_older_than must be positive');
  end if;
  if max_sessions is null or max_sessions not between 1 and 10000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_sessions must be between 1 and 10000');
  end if;

  for v_candidate in
    select s.id, s.customer_user_id
    from public.sessions s
    join public.session_assignments a on a.session_id = s.id and a.status = 'queued'
    where s.status = 'pending'
      and a.offered_at < pg_catalog.now() - case when a.urgent then urgent_older_than else older_than end
    order by a.offered_at
    limit max_sessions
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
    -- Under the lock, look again: an accept, release or cancel may have committed since the scan.
    select a.* into v_assignment
    from public.session_assignments a
    where a.session_id = v_session.id and a.status = 'queued';
    v_limit := case when v_assignment.urgent then urgent_older_than else older_than end;
    if v_session.status <> 'pending' or v_assignment.id is null
       or v_assignment.offered_at >= pg_catalog.now() - v_limit then
      continue;
    end if;
    perform private.end_unstarted_session(v_session, 'expired', null,
      pg_catalog.jsonb_build_object(
        'offered_at', v_assignment.offered_at, 'urgent', v_assignment.urgent, 'limit', v_limit::text));
    v_expired := v_expired || v_session.id;
  end loop;

  return pg_catalog.jsonb_build_object(
    'expired', pg_catalog.cardinality(v_expired),
    'session_ids', pg_catalog.to_jsonb(v_expired),
    'skipped', v_skipped
  );
end;
$$;

comment on function public.expire_sessions(interval, interval, integer) is
  'The sweep: pending sessions whose queued assignment was offered longer ago than older_than '
  '(urgent_older_than for urgent ones) become expired, with their offers, an expired event and the '
  'same refunds as a cancel. Safe to run from many places at once: it only tries locks (customer '
  'advisory lock, row lock skip locked) and leaves what is busy to the next sweep, so sweeps never '
  'wait for each other or for a request, and each session expires and is refunded once. '
  'Runs from pg_cron where available, the service and the CLI. service_role only.';
