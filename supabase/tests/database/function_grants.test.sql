-- Grants: every function in public is EXECUTE for service_role only (the service vouches for who
-- the caller is), SECURITY DEFINER ones pin search_path, and private is out of the API roles'
-- reach but for what a policy calls. New functions are checked without being listed. Run alone: `pg_prove -d <url> this-file`.
begin;
create extension if not exists pgtap with schema extensions;
select plan(10);

create temporary view public_functions as
select p.oid, p.oid::regprocedure as signature, p.prosecdef, p.proconfig, p.proacl, p.proowner
from pg_catalog.pg_proc p
where p.pronamespace = 'public'::regnamespace
  and not exists (  -- functions an extension brings are the extension's business
    select 1 from pg_catalog.pg_depend d
    where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
  );

select cmp_ok(
  (select count(*) from public_functions), '>=', 15::bigint,
  'the API functions are there to check'
);
select is_empty(
  $$select signature from public_functions where has_function_privilege('anon', oid, 'execute')$$,
  'anon may execute no function in public'
);
select is_empty(
  $$select signature from public_functions where has_function_privilege('authenticated', oid, 'execute')$$,
  'authenticated may execute no function in public'
);
select is_empty(
  $$select signature from public_functions f
    where exists (
      select 1 from pg_catalog.aclexplode(coalesce(f.proacl, pg_catalog.acldefault('f', f.proowner))) x
      where x.grantee = 0 and x.privilege_type = 'EXECUTE'
    )$$,
  'nothing in public is executable by PUBLIC'
);
select is_empty(
  $$select signature from public_functions where not has_function_privilege('service_role', oid, 'execute')$$,
  'service_role may execute every function in public'
);
select is_empty(
  $$select signature from public_functions
    where prosecdef and not coalesce(proconfig @> array['search_path=""'], false)$$,
  'every SECURITY DEFINER function sets search_path to empty'
);
select ok(
  exists (select 1 from public_functions where signature::text like 'create_session_record(%')
  and not exists (
    select 1 from public_functions
    where signature::text like 'create_session_record(%' and has_function_privilege('authenticated', oid, 'execute')
  ),
  'a customer cannot create a session behind the service''s back'
);
select schema_privs_are('private', 'anon', array[]::text[], 'anon has no use of schema private');
select is_empty(
  $$select p.oid::regprocedure from pg_catalog.pg_proc p
    where p.pronamespace = 'private'::regnamespace
      and has_function_privilege('authenticated', p.oid, 'execute')
      and not exists (  -- a function a row level security policy calls
        select 1 from pg_catalog.pg_depend d
        where d.classid = 'pg_catalog.pg_policy'::regclass and d.refobjid = p.oid
      )$$,
  'in private, authenticated may execute only what a row level security policy calls'
);

-- As PostgREST would run it for a signed-in customer: permission denied.
insert into auth.users (id, email) values ('a11ce000-0000-4000-8000-000000000001', 'alice@example.com');
set local role authenticated;
set local request.jwt.claims to '{"sub": "a11ce000-0000-4000-8000-000000000001", "role": "authenticated"}';
select throws_ok(
  $$select public.cancel_session(gen_random_uuid(), 'a11ce000-0000-4000-8000-000000000001')$$,
  '42501', null,
  'calling a lifecycle function as a customer is permission denied'
);

select * from finish();
rollback;
