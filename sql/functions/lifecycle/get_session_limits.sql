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
