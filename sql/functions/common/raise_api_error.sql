create or replace function private.raise_api_error(
  status integer,
  code text,
  message text,
  details jsonb default null
) returns void
language plpgsql
set search_path = ''
as $$
begin
  raise sqlstate 'PGRST' using
    message = pg_catalog.jsonb_build_object(
      'code', code, 'message', message, 'details', details::text, 'hint', null
    )::text,
    detail = pg_catalog.jsonb_build_object(
      'status', status, 'headers', pg_catalog.jsonb_build_object()
    )::text;
end;
$$;

comment on function private.raise_api_error(integer, text, text, jsonb) is
  'Aborts the transaction with an error PostgREST answers as the given HTTP status, with a '
  'stable code callers can branch on instead of parsing messages.';
