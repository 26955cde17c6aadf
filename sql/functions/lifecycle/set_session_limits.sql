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
