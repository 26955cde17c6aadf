create or replace function private.lock_customer(customer_id uuid, wait boolean default true)
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_key bigint := pg_catalog.hashtextextended('create_session_record:' || customer_id::text, 0);
begin
  if wait then
    perform pg_catalog.pg_advisory_xact_lock(v_key);
    return true;
  end if;
  return pg_catalog.pg_try_advisory_xact_lock(v_key);
end;
$$;

comment on function private.lock_customer(uuid, boolean) is
  'The per-customer transaction lock every session write takes (the key create_session_record '
  'uses), so creation and every transition of one customer''s sessions happen one at a time. '
  'wait => false only tries, for the expiry sweep, which must never wait.';
