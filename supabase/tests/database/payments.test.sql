-- Money is conserved: a paid Checkout becomes exactly one session or one full refund, and a
-- refunded payment can never become a session. Run alone: `pg_prove -d <url> this-file`.
begin;
create extension if not exists pgtap with schema extensions;
select plan(18);

-- Carol will pay for a standard (video) session; Dan pays while he already has a free session.
insert into auth.users (id, email) values
  ('ca401000-0000-4000-8000-000000000001', 'carol@example.com'),
  ('da400000-0000-4000-8000-000000000002', 'dan@example.com');
insert into public.intakes (id, customer_user_id, plan) values
  ('1c000000-0000-4000-8000-000000000001', 'ca401000-0000-4000-8000-000000000001', 'standard'),
  ('1d000000-0000-4000-8000-000000000002', 'da400000-0000-4000-8000-000000000002', 'standard');

set local role service_role;

-- The waiver's Checkout: the request and its key are stored before anything is sent.
create temporary table carol_payment on commit drop as
select public.open_checkout('ca401000-0000-4000-8000-000000000001', '1c000000-0000-4000-8000-000000000001',
  'https://api.example/api/checkout/success?session_id={CHECKOUT_SESSION_ID}', 'https://app.example/waiver') as p;
select is((select p ->> 'status' from carol_payment), 'creating', 'a new Checkout starts as creating');
select is((select (p -> 'request' -> 'line_items' -> 0 -> 'price_data' ->> 'unit_amount')::integer from carol_payment),
  2999, 'the request carries the catalog price as the snapshot');
select is((select p ->> 'idempotency_key' from carol_payment), (select 'checkout-' || (p ->> 'id') from carol_payment),
  'the key is the payment''s own');
select is(
  (select public.open_checkout('ca401000-0000-4000-8000-000000000001', '1c000000-0000-4000-8000-000000000001',
     'https://a.example/s', 'https://a.example/c') ->> 'id'),
  (select p ->> 'id' from carol_payment),
  'a second click before Stripe answers reuses the same request'
);
select lives_ok(
  $$select public.record_checkout_opened((select (p ->> 'id')::uuid from carol_payment), 'cs_test_carol1',
      'https://checkout.stripe.com/c/pay/cs_test_carol1', now() + interval '30 minutes')$$,
  'Stripe''s answer is recorded'
);
select is((select status from public.payments where checkout_session_id = 'cs_test_carol1'), 'open',
  'the payment is open');

-- Paid: one session, the payment consumed; again (Stripe retries): the same session.
create temporary table carol_session on commit drop as
select public.create_session_record(
  customer_id => 'ca401000-0000-4000-8000-000000000001', plan => 'standard',
  intake_id => '1c000000-0000-4000-8000-000000000001', payment_method => 'stripe',
  stripe_session_id => 'cs_test_carol1', amount_paid => 2999, currency => 'usd', payment_intent => 'pi_carol1'
) as r;
select is((select (r ->> 'created')::boolean from carol_session), true, 'a paid Checkout makes a session');
select results_eq(
  $$select status, session_id from public.payments where checkout_session_id = 'cs_test_carol1'$$,
  $$select 'consumed'::text, (r ->> 'session_id')::uuid from carol_session$$,
  'the payment is consumed by that session'
);
select is(
  (select public.create_session_record(
     customer_id => 'ca401000-0000-4000-8000-000000000001', plan => 'standard',
     intake_id => '1c000000-0000-4000-8000-000000000001', payment_method => 'stripe',
     stripe_session_id => 'cs_test_carol1', amount_paid => 2999, currency => 'usd') ->> 'session_id'),
  (select r ->> 'session_id' from carol_session),
  'a redelivery answers the same session'
);

-- Cancelled: the payment goes back, with the exact refund request stored.
select lives_ok(
  $$select public.cancel_session((select (r ->> 'session_id')::uuid from carol_session),
                                 'ca401000-0000-4000-8000-000000000001')$$,
  'Carol cancels before a mechanic starts'
);
select results_eq(
  $$select p.status, o.idempotency_key, (o.params ->> 'amount')::integer, o.params ->> 'payment_intent'
    from public.payments p join public.stripe_outbox o on o.payment_id = p.id and o.kind = 'refund'
    where p.checkout_session_id = 'cs_test_carol1'$$,
  $$values ('refund_requested'::text, 'refund-cs_test_carol1'::text, 2999, 'pi_carol1'::text)$$,
  'a full refund is requested with its key and exact parameters'
);

-- A refunded payment cannot become a session again, whatever replays it.
select lives_ok(
  $$select public.record_charge_refund('re_carol1', 'pi_carol1', 2999, 'succeeded')$$,
  'Stripe reports the refund succeeded'
);
select is((select status from public.payments where checkout_session_id = 'cs_test_carol1'), 'refunded',
  'the payment is refunded');
select is(
  (select public.create_session_record(
     customer_id => 'ca401000-0000-4000-8000-000000000001', plan => 'standard',
     intake_id => '1c000000-0000-4000-8000-000000000001', payment_method => 'stripe',
     stripe_session_id => 'cs_test_carol1', amount_paid => 2999, currency => 'usd') -> 'session_id'),
  'null'::jsonb,
  'replaying the paid Checkout creates nothing'
);
select is((select count(*)::integer from public.sessions where customer_user_id = 'ca401000-0000-4000-8000-000000000001'
            and is_active), 0, 'Carol has no active session');

-- Paid while another session is active: refunded in the same transaction, never neither.
select public.create_session_record(customer_id => 'da400000-0000-4000-8000-000000000002', plan => 'free',
  intake_id => '1d000000-0000-4000-8000-00000000000f', payment_method => 'free', intake => '{}');
create temporary table dan_payment on commit drop as
select 'cs_test_dan1'::text as cs;
insert into public.payments (customer_user_id, intake_id, attempt, plan, amount, currency, status, idempotency_key,
                             request, checkout_session_id, expires_at)
values ('da400000-0000-4000-8000-000000000002', '1d000000-0000-4000-8000-000000000002', 0, 'standard', 2999, 'usd',
        'open', 'checkout-dan1', '{}', 'cs_test_dan1', now() + interval '30 minutes');
select is(
  (select public.create_session_record(
     customer_id => 'da400000-0000-4000-8000-000000000002', plan => 'standard',
     intake_id => '1d000000-0000-4000-8000-000000000002', payment_method => 'stripe',
     stripe_session_id => 'cs_test_dan1', amount_paid => 2999, currency => 'usd', payment_intent => 'pi_dan1')
   ->> 'reason'),
  'ACTIVE_SESSION_EXISTS',
  'a paid Checkout that conflicts is answered as refunded, with why'
);
select is((select status from public.payments where checkout_session_id = 'cs_test_dan1'), 'refund_requested',
  'and its full refund is requested in the same transaction');

-- The state diagram holds whoever writes: a refunded payment cannot be consumed again.
reset role;
select throws_ok(
  $$update public.payments set status = 'consumed' where checkout_session_id = 'cs_test_carol1'$$,
  '23514', null, 'a status change the diagram does not list is refused'
);

select * from finish();
rollback;
