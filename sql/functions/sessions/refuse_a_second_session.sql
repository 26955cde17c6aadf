create or replace function private.refuse_a_second_session(customer_id uuid) returns void
language plpgsql
stable
set search_path = ''
as $$
declare
  v_active public.sessions%rowtype;
begin
  select s.* into v_active
  from public.sessions s
  where s.customer_user_id = refuse_a_second_session.customer_id and s.is_active;
  if found then
    perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS',
      'You already have an active session',
      pg_catalog.jsonb_build_object(
        'activeSessionId', v_active.id,
        'activeSessionType', v_active.type,
        'activeSessionStatus', v_active.status
      ));
  end if;
end;
$$;
comment on function private.refuse_a_second_session(uuid) is
  'The one-active-session rule as the caller sees it: 409 ACTIVE_SESSION_EXISTS naming the active '
  'session (id, type, status). Called under the customer''s lock by everything that would give a '
  'customer a session or sell one (write_session, submit_intake, open_checkout).';
