-- Row level security per role, with the claims PostgREST sets from the JWT: a customer reads only
-- her own rows, a mechanic only the offers routing makes her, anon only the plans on sale, and
-- nobody but the service writes. Run alone: `pg_prove -d <url> this-file`.
begin;
create extension if not exists pgtap with schema extensions;
select plan(33);

-- Alice, Bob, Cy and Dee each have a session and an intake, Alice and Bob credits; Mia and Max are
-- active mechanics, Rex retired.
insert into auth.users (id, email) values
  ('a11ce000-0000-4000-8000-000000000001', 'alice@example.com'),
  ('b0b00000-0000-4000-8000-000000000002', 'bob@example.com'),
  ('3e000000-0000-4000-8000-000000000001', 'mia@example.com'),
  ('3e000000-0000-4000-8000-000000000002', 'max@example.com'),
  ('3e000000-0000-4000-8000-000000000003', 'rex@example.com');
insert into public.mechanics (user_id, display_name, active) values
  ('3e000000-0000-4000-8000-000000000001', 'Mia', true),
  ('3e000000-0000-4000-8000-000000000002', 'Max', true),
  ('3e000000-0000-4000-8000-000000000003', 'Rex', false);
insert into public.plans (code, session_type, price_cents, is_free, active)
values ('withdrawn', 'chat', 0, true, false);
insert into public.credit_entries (customer_user_id, delta, reason) values
  ('a11ce000-0000-4000-8000-000000000001', 3, 'grant'),
  ('b0b00000-0000-4000-8000-000000000002', 5, 'grant');
insert into auth.users (id, email) values
  ('c0000000-0000-4000-8000-00000000000c', 'cy@example.com'),
  ('d0000000-0000-4000-8000-00000000000d', 'dee@example.com');
do $$
declare
  v_cy uuid;
begin
  perform public.create_session_record('a11ce000-0000-4000-8000-000000000001', 'free',
    '1a000000-0000-4000-8000-000000000001', 'free', intake => '{}');
  perform public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'trial',
    '1b000000-0000-4000-8000-000000000001', 'free', intake => '{}');
  -- Cy's session is already Mia's: no longer an open offer.
  v_cy := public.create_session_record('c0000000-0000-4000-8000-00000000000c', 'free',
    '1c000000-0000-4000-8000-000000000001', 'free', intake => '{}') ->> 'session_id';
  perform public.accept_assignment(
    (select a.id from public.session_assignments a where a.session_id = v_cy),
    '3e000000-0000-4000-8000-000000000001');
  -- Dee asks for Max by name, and for nobody else (workshop_only).
  perform public.create_session_record('d0000000-0000-4000-8000-00000000000d', 'free',
    '1d000000-0000-4000-8000-000000000001', 'free', routing_type => 'workshop_only',
    preferred_mechanic_id => '3e000000-0000-4000-8000-000000000002', intake => '{}');
end
$$;

-- What the roles below should see, read first as the owner (a database with other rows passes too).
create temporary table alice_session as
select id from public.sessions where customer_user_id = 'a11ce000-0000-4000-8000-000000000001';
create temporary table open_offers as
select a.session_id from public.session_assignments a join public.sessions s on s.id = a.session_id
where a.status = 'queued' and s.customer_user_id in
  ('a11ce000-0000-4000-8000-000000000001', 'b0b00000-0000-4000-8000-000000000002',
   'c0000000-0000-4000-8000-00000000000c');
create temporary table cy_session as
select id from public.sessions where customer_user_id = 'c0000000-0000-4000-8000-00000000000c';
create temporary table dee_session as
select id from public.sessions where customer_user_id = 'd0000000-0000-4000-8000-00000000000d';
create temporary table plans_on_sale as select code from public.plans where active;
grant select on alice_session, open_offers, cy_session, dee_session, plans_on_sale to anon, authenticated;

select is((select count(*) from open_offers), 2::bigint, 'Alice''s and Bob''s sessions are open offers');

-- anon: the catalog of plans on sale, and nothing else.
set local role anon;
set local request.jwt.claims to '{"role": "anon"}';
select bag_eq(
  $$select code from public.plans$$,
  $$select code from plans_on_sale$$,
  'anon reads the plans on sale'
);
select is_empty($$select 1 from public.plans where code = 'withdrawn'$$, 'anon does not see a withdrawn plan');
select throws_ok($$select 1 from public.sessions$$, '42501', null, 'anon cannot read sessions');
select throws_ok($$select 1 from public.intakes$$, '42501', null, 'anon cannot read intakes');
select throws_ok($$select 1 from public.session_events$$, '42501', null, 'anon cannot read session events');
select throws_ok($$select 1 from public.credit_entries$$, '42501', null, 'anon cannot read credits');
select throws_ok($$select 1 from public.session_assignments$$, '42501', null, 'anon cannot read assignments');
select throws_ok($$select 1 from public.mechanics$$, '42501', null, 'anon cannot read mechanics');
select throws_ok(
  $$insert into public.intakes (customer_user_id, plan) values ('a11ce000-0000-4000-8000-000000000001', 'free')$$,
  '42501', null, 'anon cannot file an intake'
);

-- Alice: her own sessions, intakes, participation, events and credits; nobody else's.
set local role authenticated;
set local request.jwt.claims to '{"sub": "a11ce000-0000-4000-8000-000000000001", "role": "authenticated"}';
select results_eq(
  $$select customer_user_id from public.sessions$$,
  $$values ('a11ce000-0000-4000-8000-000000000001'::uuid)$$,
  'Alice reads her session only'
);
select results_eq(
  $$select id from public.intakes$$,
  $$values ('1a000000-0000-4000-8000-000000000001'::uuid)$$,
  'Alice reads her intake only'
);
select results_eq(
  $$select session_id, event_type from public.session_events$$,
  $$select id, 'created' from alice_session$$,
  'Alice reads her session''s events only'
);
select results_eq(
  $$select user_id from public.session_participants$$,
  $$values ('a11ce000-0000-4000-8000-000000000001'::uuid)$$,
  'Alice reads her own participation only'
);
select results_eq(
  $$select customer_user_id, delta from public.credit_entries$$,
  $$values ('a11ce000-0000-4000-8000-000000000001'::uuid, 3)$$,
  'Alice reads her own credit entries only'
);
select results_eq(
  $$select customer_user_id, balance from public.credit_balances$$,
  $$values ('a11ce000-0000-4000-8000-000000000001'::uuid, 3)$$,
  'Alice reads her own balance only'
);
select is_empty($$select 1 from public.session_assignments$$, 'a customer sees no assignments');
select is_empty($$select 1 from public.mechanic_queue$$, 'a customer sees no queue');
select is_empty($$select 1 from public.mechanics$$, 'a customer sees no mechanic profiles');
select throws_ok(
  $$insert into public.intakes (customer_user_id, plan) values ('a11ce000-0000-4000-8000-000000000001', 'free')$$,
  '42501', null, 'Alice files no intake around the service, not even her own'
);
select throws_ok(
  $$insert into public.intakes (customer_user_id, plan) values ('b0b00000-0000-4000-8000-000000000002', 'free')$$,
  '42501', null, 'Alice cannot file an intake for Bob'
);
select throws_ok(
  $$insert into public.sessions (customer_user_id, type, plan, intake_id)
    values ('a11ce000-0000-4000-8000-000000000001', 'chat', 'free', '1a000000-0000-4000-8000-000000000001')$$,
  '42501', null, 'Alice cannot write a session herself'
);
select throws_ok(
  $$update public.sessions set status = 'completed'$$,
  '42501', null, 'Alice cannot move her session'
);
select throws_ok(
  $$insert into public.credit_entries (customer_user_id, delta, reason)
    values ('a11ce000-0000-4000-8000-000000000001', 100, 'grant')$$,
  '42501', null, 'Alice cannot grant herself credits'
);
select throws_ok($$select 1 from public.stripe_outbox$$, '42501', null, 'Alice cannot read the Stripe outbox');

-- Mia, an active mechanic: the offers routing makes her and her own profile, no customer's data.
set local request.jwt.claims to '{"sub": "3e000000-0000-4000-8000-000000000001", "role": "authenticated"}';
select is_empty($$select 1 from public.sessions$$, 'she reads no customer''s session');
select bag_eq(
  $$select session_id from public.session_assignments$$,
  $$select session_id from public.mechanic_queue$$,
  'the assignments she reads are exactly the queue'
);
select bag_eq(
  $$select session_id from public.mechanic_queue
    where session_id in (select session_id from open_offers union all select id from cy_session
                         union all select id from dee_session)$$,
  $$select session_id from open_offers$$,
  'she sees Alice''s and Bob''s open offers, not Cy''s that she holds nor Dee''s asked of Max'
);
select results_eq(
  $$select user_id from public.mechanics$$,
  $$values ('3e000000-0000-4000-8000-000000000001'::uuid)$$,
  'she reads her own profile only'
);
select is_empty(
  $$select 1 from public.intakes union all select 1 from public.credit_entries
    union all select 1 from public.session_events$$,
  'she reads no intake, credit or event'
);

-- Max: Dee's offer, which routing makes to him alone.
set local request.jwt.claims to '{"sub": "3e000000-0000-4000-8000-000000000002", "role": "authenticated"}';
select bag_eq(
  $$select session_id from public.session_assignments where session_id in (select id from dee_session)$$,
  $$select id from dee_session$$,
  'Max sees the offer Dee made him by name'
);

-- Rex, retired: nothing.
set local request.jwt.claims to '{"sub": "3e000000-0000-4000-8000-000000000003", "role": "authenticated"}';
select is_empty($$select 1 from public.session_assignments$$, 'a retired mechanic sees no offers');

-- Every table in public has row level security on.
reset role;
select is_empty(
  $$select c.relname from pg_catalog.pg_class c
    where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and not c.relrowsecurity$$,
  'row level security is on for every table in public'
);

select * from finish();
rollback;
