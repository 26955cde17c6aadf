-- public.create_session_record: the one way a session comes into being (free and credits plans;
-- Stripe-paid creation is payments.test.sql's). Run alone: `pg_prove -d <url> this-file`.
begin;
create extension if not exists pgtap with schema extensions;
select plan(31);

-- Alice and Bob are customers; Bob has one credit.
insert into auth.users (id, email) values
  ('a11ce000-0000-4000-8000-000000000001', 'alice@example.com'),
  ('b0b00000-0000-4000-8000-000000000002', 'bob@example.com');
insert into public.credit_entries (customer_user_id, delta, reason)
values ('b0b00000-0000-4000-8000-000000000002', 1, 'grant');

-- The service calls it as service_role, as PostgREST does with the service key.
set local role service_role;

create temporary table first_call on commit drop as
select public.create_session_record(
  customer_id => 'a11ce000-0000-4000-8000-000000000001',
  plan => 'free',
  intake_id => '1a000000-0000-4000-8000-000000000001',
  payment_method => 'free',
  urgent => true,
  intake => '{"concern": "grinding noise", "vehicle_year": 2014}'
) as result;

-- Writes: the intake, the session and everything that hangs off it, in one call.
select is(
  (select result - 'session_id' from first_call),
  '{"created": true, "status": "pending", "session_type": "chat"}'::jsonb,
  'a free intake creates a pending chat session'
);
select results_eq(
  $$select customer_user_id, plan, status, is_active from public.sessions
    where intake_id = '1a000000-0000-4000-8000-000000000001'$$,
  $$values ('a11ce000-0000-4000-8000-000000000001'::uuid, 'free', 'pending', true)$$,
  'the session belongs to the customer, on her plan, active'
);
select results_eq(
  $$select concern, vehicle_year, urgent from public.intakes
    where id = '1a000000-0000-4000-8000-000000000001'$$,
  $$values ('grinding noise', 2014, true)$$,
  'the intake is written in the same call'
);
select results_eq(
  $$select user_id, role from public.session_participants
    where session_id = (select (result ->> 'session_id')::uuid from first_call)$$,
  $$values ('a11ce000-0000-4000-8000-000000000001'::uuid, 'customer')$$,
  'the customer is the session''s one participant'
);
select results_eq(
  $$select status, session_type, urgent from public.session_assignments
    where session_id = (select (result ->> 'session_id')::uuid from first_call)$$,
  $$values ('queued', 'chat', true)$$,
  'one queued assignment offers it to mechanics'
);
select results_eq(
  $$select event_type, user_id from public.session_events
    where session_id = (select (result ->> 'session_id')::uuid from first_call)$$,
  $$values ('created', 'a11ce000-0000-4000-8000-000000000001'::uuid)$$,
  'one created event records it'
);

-- Idempotent retry: the same intake id answers the first session and writes nothing more.
select is(
  public.create_session_record(
    customer_id => 'a11ce000-0000-4000-8000-000000000001', plan => 'free',
    intake_id => '1a000000-0000-4000-8000-000000000001', payment_method => 'free',
    intake => '{"concern": "grinding noise"}'
  ),
  (select result - 'created' || '{"created": false}' from first_call),
  'a retry with the same intake id answers the first session, created false'
);
select is(
  (select count(*) from public.sessions where customer_user_id = 'a11ce000-0000-4000-8000-000000000001'),
  1::bigint,
  'the retry wrote no second session'
);
select is(
  (select count(*) from public.session_events e join public.sessions s on s.id = e.session_id
   where s.customer_user_id = 'a11ce000-0000-4000-8000-000000000001'),
  1::bigint,
  'the retry wrote no second event'
);

-- One active session per customer: 409 naming the active one, nothing written.
select throws_like(
  $$select public.create_session_record(
      customer_id => 'a11ce000-0000-4000-8000-000000000001', plan => 'trial',
      intake_id => '1a000000-0000-4000-8000-000000000002', payment_method => 'free',
      intake => '{}')$$,
  '%"code": "ACTIVE_SESSION_EXISTS"%',
  'a second session while one is active is refused with ACTIVE_SESSION_EXISTS'
);
select throws_like(
  format($$select public.create_session_record(
      customer_id => 'a11ce000-0000-4000-8000-000000000001', plan => 'trial',
      intake_id => '1a000000-0000-4000-8000-000000000002', payment_method => 'free',
      intake => '{}')$$),
  format('%%activeSessionId%%%s%%', (select result ->> 'session_id' from first_call)),
  'the refusal names the active session'
);
select is_empty(
  $$select 1 from public.intakes where id = '1a000000-0000-4000-8000-000000000002'$$,
  'the refused call left no intake behind'
);
reset role;
select throws_ok(
  $$insert into public.sessions (customer_user_id, type, plan, intake_id)
    select customer_user_id, 'chat', 'free', id from public.intakes
    where id = '1a000000-0000-4000-8000-000000000001'$$,
  '23505',
  null,
  'the unique index holds the line for a writer that skips the function'
);
set local role service_role;

-- Validation: a clear code for each bad input, and nothing written for Bob.
select throws_like(
  $$select public.create_session_record(null, 'free', '1b000000-0000-4000-8000-000000000001', 'free')$$,
  '%"code": "MISSING_FIELD"%', 'a missing customer is MISSING_FIELD'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
      '1b000000-0000-4000-8000-000000000001', 'cash', intake => '{}')$$,
  '%"code": "INVALID_PAYMENT_METHOD"%', 'an unknown payment method is INVALID_PAYMENT_METHOD'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'gold',
      '1b000000-0000-4000-8000-000000000001', 'free', intake => '{}')$$,
  '%"code": "UNKNOWN_PLAN"%', 'a plan not on sale is UNKNOWN_PLAN'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
      '1b000000-0000-4000-8000-000000000001', 'free', type => 'video', intake => '{}')$$,
  '%"code": "TYPE_PLAN_MISMATCH"%', 'a type the plan does not offer is TYPE_PLAN_MISMATCH'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'quick',
      '1b000000-0000-4000-8000-000000000001', 'free', intake => '{}')$$,
  '%"code": "PAYMENT_METHOD_MISMATCH"%', 'a paid plan taken for free is PAYMENT_METHOD_MISMATCH'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
      '1b000000-0000-4000-8000-000000000001', 'free', routing_type => 'anyone', intake => '{}')$$,
  '%"code": "INVALID_ROUTING_TYPE"%', 'an unknown routing type is INVALID_ROUTING_TYPE'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
      '1b000000-0000-4000-8000-000000000001', 'free', customer_email => 'not an email', intake => '{}')$$,
  '%"code": "INVALID_EMAIL"%', 'a malformed email is INVALID_EMAIL'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
      '1b000000-0000-4000-8000-000000000001', 'free')$$,
  '%"code": "INTAKE_NOT_FOUND"%', 'no intake, stored or sent, is INTAKE_NOT_FOUND'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
      '1b000000-0000-4000-8000-000000000001', 'free', intake => '{"vehicle_year": 1492}')$$,
  '%"code": "INVALID_INTAKE"%', 'an intake its table refuses is INVALID_INTAKE'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'free',
      '1b000000-0000-4000-8000-000000000001', 'free',
      preferred_mechanic_id => '3e000000-0000-4000-8000-000000000009', intake => '{}')$$,
  '%"code": "MECHANIC_NOT_FOUND"%', 'an unknown preferred mechanic is MECHANIC_NOT_FOUND'
);
select throws_like(
  $$select public.create_session_record('c0000000-0000-4000-8000-00000000000c', 'free',
      '1c000000-0000-4000-8000-000000000001', 'free', intake => '{}')$$,
  '%"code": "UNKNOWN_USER"%', 'a customer who is not a user is UNKNOWN_USER'
);
select throws_like(
  $$select public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'standard',
      '1b000000-0000-4000-8000-000000000001', 'credits', intake => '{}')$$,
  '%"code": "INSUFFICIENT_CREDITS"%', 'a plan costing more credits than the balance is INSUFFICIENT_CREDITS'
);
select is_empty(
  $$select 1 from public.intakes where customer_user_id = 'b0b00000-0000-4000-8000-000000000002'
    union all
    select 1 from public.sessions where customer_user_id = 'b0b00000-0000-4000-8000-000000000002'$$,
  'every refused call left nothing behind'
);

-- Credits: the debit is written with the session, and the balance cannot be spent twice.
select is(
  public.create_session_record('b0b00000-0000-4000-8000-000000000002', 'quick',
    '1b000000-0000-4000-8000-000000000002', 'credits', intake => '{}') ->> 'created',
  'true',
  'a plan within the balance is paid with credits'
);
select results_eq(
  $$select delta, reason from public.credit_entries
    where customer_user_id = 'b0b00000-0000-4000-8000-000000000002' order by id$$,
  $$values (1, 'grant'), (-1, 'session')$$,
  'the session''s debit is in the ledger'
);
select is(
  (select balance from public.credit_balances where customer_user_id = 'b0b00000-0000-4000-8000-000000000002'),
  0,
  'the balance is spent'
);

-- Once her session has ended, the customer may book again.
reset role;
update public.sessions set status = 'completed'
where customer_user_id = 'a11ce000-0000-4000-8000-000000000001';
set local role service_role;
select is(
  public.create_session_record('a11ce000-0000-4000-8000-000000000001', 'trial',
    '1a000000-0000-4000-8000-000000000003', 'free', intake => '{}') ->> 'created',
  'true',
  'a customer whose session ended may create the next one'
);
select is(
  (select count(*) from public.sessions
   where customer_user_id = 'a11ce000-0000-4000-8000-000000000001' and is_active),
  1::bigint,
  'and she has exactly one active session again'
);

select * from finish();
rollback;
