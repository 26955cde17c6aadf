-- Expire unaccepted sessions every minute from pg_cron where the database has it (hosted Supabase),
-- and do nothing where it does not (the embedded PostgreSQL, a bare server): there the service
-- (`pysvc serve`) and `pysvc sessions expire` run public.expire_sessions instead. Re-running this
-- replaces the job of the same name, so there is never more than one.
do $$
begin
  if not exists (select 1 from pg_catalog.pg_available_extensions where name = 'pg_cron') then
    raise notice 'pg_cron is not available: sessions are expired by the service instead';
    return;
  end if;
  begin
    -- Supabase's documented form: the extension lives in pg_catalog, its jobs in schema cron.
    create extension if not exists pg_cron with schema pg_catalog;
  exception when others then
    -- Installed but not loaded (shared_preload_libraries), or not permitted: the same fallback.
    raise warning 'pg_cron could not be created (%): sessions are expired by the service instead', sqlerrm;
    return;
  end;
  execute $sql$select cron.schedule('pysvc-expire-sessions', '* * * * *', 'select public.expire_sessions()')$sql$;
end
$$;
