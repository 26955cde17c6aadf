-- The lifecycle: accept (first mechanic wins), start (once the waiver is signed), complete,
-- release, cancel, expire, and what each refuses. Refunds are payments.test.sql's. Run alone: `pg_prove -d <url> this-file`.
begin;
create extension if not exists pgtap with schema extensions;
select plan(31);

-- Alice and Bob are customers; Mia and Max active mechanics; Rex a retired one.
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

set local role service_role;

create temporary table s on commit drop as
select (public.create_session_record('a11ce000-0000-4000-8000-000000000001', 'free',
  '1a000000-0000-4000-8000-000000000001', 'free', intake => '{}') ->> 'session_id')::uuid as id;
create temporary table a on commit drop as
select sa.id from public.session_assignments sa where sa.session_id = (select id from s);

-- Accept: only active mechanics, the first one wins, again is a no-op.
select throws_like(
  $$select public.accept_assignment((select id from a), '3e000000-0000-4000-8000-000000000003')$$,
  '%"code": "MECHANIC_INACTIVE"%', 'a retired mechanic cannot accept'
);
select throws_like(
  $$select public.accept_assignment((select id from a), 'b0b00000-0000-4000-8000-000000000002')$$,
  '%"code": "NOT_A_MECHANIC"%', 'a customer cannot accept'
);
select throws_like(
  $$select public.start_session((select id from s), '3e000000-0000-4000-8000-000000000001')$$,
  '%"code": "NOT_ASSIGNED_MECHANIC"%', 'nobody starts a session nobody accepted'
);
select is(
  public.accept_assignment((select id from a), '3e000000-0000-4000-8000-000000000001')
    - array['session_id', 'assignment_id', 'accepted_at', 'updated_at', 'customer_id', 'refund'],
  '{"status": "waiting", "plan": "free", "session_type": "chat", "changed": true,
    "mechanic_id": "3e000000-0000-4000-8000-000000000001", "assignment_status": "accepted"}'::jsonb,
  'Mia accepts: the session waits for her'
);
select is(
  public.accept_assignment((select id from a), '3e000000-0000-4000-8000-000000000001') ->> 'changed',
  'false', 'Mia accepting again changes nothing'
);
select throws_like(
  $$select public.accept_assignment((select id from a), '3e000000-0000-4000-8000-000000000002')$$,
  '%"code": "ASSIGNMENT_TAKEN"%', 'Max comes second: ASSIGNMENT_TAKEN'
);
select results_eq(
  $$select user_id, role from public.session_participants where session_id = (select id from s) order by role$$,
  $$values ('a11ce000-0000-4000-8000-000000000001'::uuid, 'customer'),
           ('3e000000-0000-4000-8000-000000000001'::uuid, 'mechanic')$$,
  'Mia joins the session'
);

-- Start and complete: the assigned mechanic only, in order.
select throws_like(
  $$select public.start_session((select id from s), '3e000000-0000-4000-8000-000000000002')$$,
  '%"code": "NOT_ASSIGNED_MECHANIC"%', 'Max cannot start Mia''s session'
);
select throws_like(
  $$select public.complete_session((select id from s), '3e000000-0000-4000-8000-000000000001')$$,
  '%"code": "INVALID_TRANSITION"%', 'a waiting session cannot be completed'
);

-- Release: Mia gives it back before starting; it is offered afresh and Max takes it.
select is(
  public.release_session((select id from s), '3e000000-0000-4000-8000-000000000001') ->> 'status',
  'pending', 'Mia releases it: pending again'
);
select is(
  (select count(*) from public.session_assignments where session_id = (select id from s) and status = 'queued'),
  1::bigint, 'a fresh queued assignment offers it again'
);
select is_empty(
  $$select 1 from public.session_participants
    where session_id = (select id from s) and user_id = '3e000000-0000-4000-8000-000000000001'$$,
  'Mia is no longer a participant'
);
select is(
  public.accept_assignment(
    (select sa.id from public.session_assignments sa where sa.session_id = (select id from s) and sa.status = 'queued'),
    '3e000000-0000-4000-8000-000000000002') ->> 'mechanic_id',
  '3e000000-0000-4000-8000-000000000002', 'Max accepts the fresh offer'
);
select throws_like(
  $$select public.start_session((select id from s), '3e000000-0000-4000-8000-000000000002')$$,
  '%"code": "WAIVER_NOT_SIGNED"%', 'nobody starts it before the customer signs the waiver'
);
reset role;
update public.intakes set waiver_signed_at = now() where id = '1a000000-0000-4000-8000-000000000001';
set local role service_role;
select is(
  public.start_session((select id from s), '3e000000-0000-4000-8000-000000000002') ->> 'status',
  'live', 'once she has, Max starts it: live'
);
select is(
  public.start_session((select id from s), '3e000000-0000-4000-8000-000000000002') ->> 'changed',
  'false', 'starting again changes nothing'
);
select throws_like(
  $$select public.cancel_session((select id from s), 'a11ce000-0000-4000-8000-000000000001')$$,
  '%"code": "SESSION_NOT_CANCELLABLE"%', 'a live session cannot be cancelled'
);
select is(
  public.complete_session((select id from s), '3e000000-0000-4000-8000-000000000002') ->> 'status',
  'completed', 'Max completes it'
);
select results_eq(
  $$select event_type from public.session_events where session_id = (select id from s) order by id$$,
  $$values ('created'), ('assigned'), ('released'), ('assigned'), ('started'), ('ended')$$,
  'every transition is in the session''s history, in order'
);

-- Cancel: the customer's own pending session only, once.
create temporary table s2 on commit drop as
select (public.create_session_record('a11ce000-0000-4000-8000-000000000001', 'trial',
  '1a000000-0000-4000-8000-000000000002', 'free', intake => '{}') ->> 'session_id')::uuid as id;
select throws_like(
  $$select public.cancel_session((select id from s2), 'b0b00000-0000-4000-8000-000000000002')$$,
  '%"code": "SESSION_NOT_FOUND"%', 'Bob cannot cancel Alice''s session: it is not found'
);
select is(
  public.cancel_session((select id from s2), 'a11ce000-0000-4000-8000-000000000001', 'changed my mind') ->> 'status',
  'cancelled', 'Alice cancels her pending session'
);
select is(
  public.cancel_session((select id from s2), 'a11ce000-0000-4000-8000-000000000001') ->> 'changed',
  'false', 'cancelling again changes nothing'
);
select throws_like(
  $$select public.accept_assignment(
      (select sa.id from public.session_assignments sa where sa.session_id = (select id from s2)),
      '3e000000-0000-4000-8000-000000000001')$$,
  '%"code": "ASSIGNMENT_CLOSED"%', 'a cancelled session''s offer cannot be accepted'
);

-- Routing: a workshop_only session asked of Max is offered to him alone.
create temporary table s4 on commit drop as
select (public.create_session_record('a11ce000-0000-4000-8000-000000000001', 'free',
  '1a000000-0000-4000-8000-000000000004', 'free', routing_type => 'workshop_only',
  preferred_mechanic_id => '3e000000-0000-4000-8000-000000000002', intake => '{}') ->> 'session_id')::uuid as id;
select ok(
  not public.mechanic_queue_for('3e000000-0000-4000-8000-000000000001') @> jsonb_build_array(
    jsonb_build_object('session_id', (select id from s4))),
  'Mia''s queue does not offer her a session asked of Max'
);
select ok(
  public.mechanic_queue_for('3e000000-0000-4000-8000-000000000002') @> jsonb_build_array(
    jsonb_build_object('session_id', (select id from s4), 'preferred', true)),
  'Max''s queue offers it to him, as preferred'
);
select throws_like(
  $$select public.accept_assignment(
      (select sa.id from public.session_assignments sa where sa.session_id = (select id from s4)),
      '3e000000-0000-4000-8000-000000000001')$$,
  '%"code": "NOT_ELIGIBLE"%', 'Mia cannot accept it'
);

-- Expire: an offer nobody accepted in time ends the session, and frees the customer.
create temporary table s3 on commit drop as
select (public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
  '1b000000-0000-4000-8000-000000000001', 'free', intake => '{}') ->> 'session_id')::uuid as id;
update public.session_assignments set offered_at = now() - interval '1 hour'
where session_id = (select id from s3);
select ok(
  public.expire_sessions() -> 'session_ids' @> jsonb_build_array((select id from s3)),
  'the sweep expires the stale session'
);
select results_eq(
  $$select status, is_active from public.sessions where id = (select id from s3)$$,
  $$values ('expired', false)$$, 'it is expired and no longer active'
);
select ok(
  not public.expire_sessions() -> 'session_ids' @> jsonb_build_array((select id from s3)),
  'a second sweep leaves it alone'
);
select throws_like(
  $$select public.expire_sessions(max_sessions => 0)$$,
  '%"code": "INVALID_ARGUMENT"%', 'a sweep of no sessions is INVALID_ARGUMENT'
);
select throws_like(
  $$select public.set_session_limits(no_show_minutes => -1)$$,
  '%"code": "INVALID_ARGUMENT"%', 'a negative limit is INVALID_ARGUMENT'
);

select * from finish();
rollback;
