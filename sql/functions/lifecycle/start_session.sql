create or replace function public.start_session(session_id uuid, mechanic_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
  v_state jsonb;
begin
  v_session := private.lock_session(start_session.session_id);
  if v_session.status = 'waiting'
     and private.assigned_mechanic(v_session.id) = start_session.mechanic_id
     and not exists (
       select 1 from public.intakes i where i.id = v_session.intake_id and i.waiver_signed_at is not null
     ) then
    perform private.raise_api_error(409, 'WAIVER_NOT_SIGNED', 'the customer has not signed the waiver yet',
      pg_catalog.jsonb_build_object('intake_id', v_session.intake_id));
  end if;
  v_state := private.advance_session(start_session.session_id, start_session.mechanic_id,
    'waiting', 'live', 'started');
  if (v_state ->> 'changed')::boolean then
    update public.sessions s set started_at = pg_catalog.now() where s.id = v_session.id;
  end if;
  return v_state;
end;
$$;
comment on function public.start_session(uuid, uuid) is
  'The assigned mechanic starts a waiting session: live from now (started_at, which the live time '
  'limit counts from), with a started event. 409 WAIVER_NOT_SIGNED until the customer''s intake has '
  'waiver_signed_at, whatever the session was paid with. Idempotent; 409 INVALID_TRANSITION from '
  'any other status. service_role only.';
