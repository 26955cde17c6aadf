create or replace function private.lock_session(session_id uuid, customer_id uuid default null)
returns public.sessions
language plpgsql
set search_path = ''
as $$
declare
  v_customer uuid;
  v_session public.sessions%rowtype;
begin
  if lock_session.session_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'session_id is required');
  end if;
  select s.customer_user_id into v_customer
  from public.sessions s
  where s.id = lock_session.session_id
    and (lock_session.customer_id is null or s.customer_user_id = lock_session.customer_id);
  if not found then
    perform private.raise_api_error(404, 'SESSION_NOT_FOUND', 'no such session');
  end if;
  perform private.lock_customer(v_customer);
  -- Read again under the lock: what was read above may have changed while waiting.
  select s.* into v_session from public.sessions s where s.id = lock_session.session_id for update;
  return v_session;
end;
$$;

comment on function private.lock_session(uuid, uuid) is
  'Finds a session (of this customer, when one is given; 404 SESSION_NOT_FOUND otherwise), takes '
  'its customer''s lock and returns the row as it is now, locked for update.';
