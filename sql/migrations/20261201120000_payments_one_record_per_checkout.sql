-- Money is conserved: one row per Stripe Checkout Session says where its money is (public.payments),
-- one row per Stripe refund says where each refund is (public.refunds), and every outbound Stripe
-- request is stored with its key and exact parameters before it is sent. Only the SQL functions
-- below write these rows, under the customer's lock; a trigger refuses any status change the state
-- diagram does not allow. public.checkouts (which this replaces) is moved here and dropped.

create table public.payments (
  id uuid primary key default gen_random_uuid(),
  customer_user_id uuid not null references auth.users (id) on delete restrict,
  intake_id uuid not null references public.intakes (id) on delete restrict,
  attempt integer not null check (attempt >= 0),
  -- The price snapshot taken when the Checkout was opened: what the customer was shown and paid.
  plan text not null references public.plans (code),
  amount integer not null check (amount > 0),
  currency text not null check (currency ~ '^[a-z]{3}$'),
  status text not null default 'creating' check (status in (
    'creating', 'open', 'processing', 'expired', 'payment_failed',
    'paid', 'consumed', 'refund_requested', 'refunded', 'refund_failed'
  )),
  -- The Checkout Session create request, exactly as sent (and re-sent) with its key.
  idempotency_key text not null unique check (char_length(idempotency_key) between 1 and 255),
  request jsonb not null check (pg_catalog.jsonb_typeof(request) = 'object'),
  checkout_session_id text unique check (checkout_session_id ~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$'),
  checkout_url text check (char_length(checkout_url) <= 2000),
  expires_at timestamptz not null,
  payment_intent text unique check (char_length(payment_intent) between 1 and 255),
  amount_paid integer check (amount_paid >= 0),
  amount_refunded integer not null default 0 check (amount_refunded >= 0),
  session_id uuid unique references public.sessions (id) on delete restrict,
  refund_reason text check (char_length(refund_reason) <= 500),
  paid_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint payments_one_per_intake_attempt unique (intake_id, attempt),
  constraint payments_open_has_checkout check (status <> 'open' or checkout_session_id is not null),
  constraint payments_consumed_has_session check (status <> 'consumed' or session_id is not null),
  constraint payments_money_taken_is_paid check (
    status not in ('paid', 'consumed', 'refund_requested', 'refunded', 'refund_failed')
    or (paid_at is not null and checkout_session_id is not null)
  ),
  constraint payments_refunded_in_full check (status <> 'refunded' or amount_refunded >= coalesce(amount_paid, amount)),
  constraint payments_refunds_within_amount check (amount_refunded <= greatest(amount, coalesce(amount_paid, 0)))
);
create index payments_customer_user_id_idx on public.payments (customer_user_id);
create index payments_open_per_customer_idx on public.payments (customer_user_id) where status = 'open';
create index payments_plan_idx on public.payments (plan);
create index payments_unsettled_idx on public.payments (updated_at)
  where status in ('paid', 'refund_requested', 'refund_failed');
comment on table public.payments is
  'One row per Stripe Checkout Session: the single source of truth for where its money is. '
  'creating -> open -> (expired | processing | paid); processing -> (paid | payment_failed); '
  'paid -> (consumed | refund_requested); consumed -> refund_requested; '
  'refund_requested -> (refunded | refund_failed); refund_failed -> (refund_requested | refunded); '
  'refunded -> (refund_failed | refund_requested) when Stripe fails a refund after it succeeded; '
  'an outside full refund moves any paid state to refund_requested or refunded. Keeps the price '
  'snapshot taken when the Checkout was opened and the exact request sent to Stripe. Written only '
  'by SQL functions, under the customer''s lock; private.check_payment_transition refuses the rest.';
comment on column public.payments.request is
  'The Checkout Session create parameters, stored before the first send: every retry sends exactly '
  'these with idempotency_key, so Stripe can never see one key with two requests.';
comment on column public.payments.amount_refunded is
  'Cents Stripe reports refunded (refunds succeeded), whoever made them.';

create table public.refunds (
  id bigint generated always as identity primary key,
  payment_id uuid not null references public.payments (id) on delete restrict,
  stripe_refund_id text not null unique check (stripe_refund_id ~ '^(re|pyr)_[A-Za-z0-9_]{1,250}$'),
  amount integer not null check (amount > 0),
  status text not null check (status in ('pending', 'requires_action', 'succeeded', 'failed', 'canceled')),
  origin text not null check (origin in ('service', 'outside')),
  failure_reason text check (char_length(failure_reason) <= 200),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index refunds_payment_id_idx on public.refunds (payment_id);
comment on table public.refunds is
  'Every Stripe refund of a payment, by Stripe''s id, with the status Stripe last reported (the create '
  'answer, refund.* events, or a listing after charge.refunded). origin: service = asked by this '
  'service through stripe_outbox; outside = made in the Stripe dashboard or by the API elsewhere.';

alter table public.payments enable row level security;
alter table public.refunds enable row level security;
revoke all on table public.payments, public.refunds from anon, authenticated;
grant select on table public.payments, public.refunds to authenticated;
create policy "customers read their own payments" on public.payments
  for select to authenticated using (customer_user_id = (select auth.uid()));
create policy "customers read the refunds of their own payments" on public.refunds
  for select to authenticated using (exists (
    select 1 from public.payments p where p.id = payment_id and p.customer_user_id = (select auth.uid())
  ));

-- The Stripe outbox: a row now names the payment it acts on and carries its exact parameters and
-- key (a retried refund of a failed one gets a key of its own); 'cancelled' = no longer needed.
alter table public.stripe_outbox add column payment_id uuid references public.payments (id) on delete restrict;
alter table public.stripe_outbox add column params jsonb not null default '{}'
  check (pg_catalog.jsonb_typeof(params) = 'object');
alter table public.stripe_outbox add column key text;
update public.stripe_outbox set key = idempotency_key;
alter table public.stripe_outbox drop column idempotency_key;
alter table public.stripe_outbox rename column key to idempotency_key;
alter table public.stripe_outbox alter column idempotency_key set not null;
alter table public.stripe_outbox add constraint stripe_outbox_idempotency_key_key unique (idempotency_key);
alter table public.stripe_outbox drop constraint stripe_outbox_status_check;
alter table public.stripe_outbox add constraint stripe_outbox_status_check
  check (status in ('pending', 'sent', 'failed', 'cancelled'));
create index stripe_outbox_payment_id_idx on public.stripe_outbox (payment_id);
comment on column public.stripe_outbox.params is
  'The request''s parameters, fixed when it was decided: every attempt sends exactly these.';
comment on column public.stripe_outbox.idempotency_key is
  'The Idempotency-Key sent with every attempt: refund-<checkout>[-n], expire-checkout-<checkout>.';

alter table public.sessions add column payment_method text not null default 'free'
  check (payment_method in ('free', 'stripe', 'credits'));
update public.sessions set payment_method = coalesce(metadata ->> 'payment_method', 'free');
comment on column public.sessions.payment_method is
  'How the session was paid: free, stripe (public.payments.session_id points here) or credits.';

create or replace function private.check_payment_transition() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status and not (
    (old.status, new.status) in (
      ('creating', 'open'), ('creating', 'expired'), ('creating', 'processing'),
      ('open', 'expired'), ('open', 'processing'),
      ('processing', 'payment_failed'), ('processing', 'expired'),
      ('paid', 'consumed'), ('paid', 'refund_requested'), ('paid', 'refunded'),
      ('consumed', 'refund_requested'), ('consumed', 'refunded'),
      ('refund_requested', 'refunded'), ('refund_requested', 'refund_failed'),
      ('refund_failed', 'refund_requested'), ('refund_failed', 'refunded'),
      -- Stripe may fail a refund it had reported succeeded.
      ('refunded', 'refund_requested'), ('refunded', 'refund_failed')
    )
    -- Stripe saying "paid" is a fact whatever we believed: money was taken.
    or (new.status = 'paid' and old.status in ('creating', 'open', 'processing', 'expired', 'payment_failed'))
  ) then
    raise exception 'payment % cannot go from % to %', old.id, old.status, new.status
      using errcode = 'check_violation';
  end if;
  new.updated_at := pg_catalog.now();
  return new;
end;
$$;
comment on function private.check_payment_transition() is
  'The payment state diagram as a trigger: any status change it does not list is refused, whoever '
  'writes it (a function bug, an operator''s UPDATE). See public.payments.';

create or replace function private.lock_payment(
  checkout_session_id text, payment_id uuid default null
) returns public.payments
language plpgsql
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
begin
  select p.* into v_payment
  from public.payments p
  where p.checkout_session_id = lock_payment.checkout_session_id
     or (lock_payment.payment_id is not null and p.id = lock_payment.payment_id)
  order by (p.checkout_session_id = lock_payment.checkout_session_id) desc nulls last
  limit 1;
  if not found then
    return null;
  end if;
  perform private.lock_customer(v_payment.customer_user_id);
  -- Read again under the lock: what was read above may have changed while waiting.
  select p.* into v_payment from public.payments p where p.id = v_payment.id for update;
  return v_payment;
end;
$$;
comment on function private.lock_payment(text, uuid) is
  'The payment of a Checkout Session (by its cs_ id, or by the payment id the Checkout''s metadata '
  'carries when the create answer was lost), with its customer''s lock taken, as every session '
  'write takes it; null when this service never opened that Checkout.';

create or replace function private.stripe_retry_delay(attempts integer) returns interval
language sql
immutable
set search_path = ''
as $$
  select least(interval '30 seconds' * pg_catalog.power(2, greatest(attempts - 1, 0)),
                          interval '1 hour');
$$;
comment on function private.stripe_retry_delay(integer) is
  'The one back-off policy for Stripe requests that failed transiently: 30 s, 1 min, 2 min, ... at '
  'most 1 hour, by attempts so far. finish_stripe_request applies it; the worker never picks its own.';

create or replace function private.enqueue_expire_checkout(payment public.payments) returns void
language sql
set search_path = ''
as $$
  insert into public.stripe_outbox (kind, checkout_session_id, payment_id, idempotency_key, params, reason)
  select 'expire_checkout', (enqueue_expire_checkout.payment).checkout_session_id,
         (enqueue_expire_checkout.payment).id,
         'expire-checkout-' || (enqueue_expire_checkout.payment).checkout_session_id, '{}'::jsonb,
         'the customer no longer needs this Checkout'
  where (enqueue_expire_checkout.payment).checkout_session_id is not null
  on conflict (idempotency_key) do nothing;
$$;
comment on function private.enqueue_expire_checkout(public.payments) is
  'Asks Stripe (through stripe_outbox, once per Checkout) to expire a payment''s open Checkout, so '
  'that it cannot be paid and then need a refund.';

create or replace function private.request_refund(payment public.payments, reason text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  p public.payments%rowtype := request_refund.payment;
  v_in_flight integer;
  v_amount integer;
  v_earlier integer;
  v_key text;
  v_request public.stripe_outbox%rowtype;
begin
  if p.status not in ('paid', 'consumed', 'refund_failed') then
    return null;  -- nothing to give back, or already on its way
  end if;
  select coalesce(pg_catalog.sum(r.amount) filter (where r.status in ('pending', 'requires_action')), 0)
  into v_in_flight
  from public.refunds r
  where r.payment_id = p.id;
  v_amount := coalesce(p.amount_paid, p.amount) - p.amount_refunded - v_in_flight;
  update public.payments x
  set status = 'refund_requested', refund_reason = pg_catalog.left(request_refund.reason, 500)
  where x.id = p.id;
  if v_amount <= 0 then
    return null;  -- outside refunds already cover it; their events settle the payment
  end if;
  -- One key per request: a retry after refund_failed is a new request, so it gets a new key.
  select pg_catalog.count(*) into v_earlier
  from public.stripe_outbox o
  where o.payment_id = p.id and o.kind = 'refund';
  v_key := 'refund-' || p.checkout_session_id
    || case when v_earlier > 0 then '-' || (v_earlier + 1)::text else '' end;
  insert into public.stripe_outbox (kind, checkout_session_id, payment_id, session_id, payment_intent,
                                    amount, reason, idempotency_key, params)
  values ('refund', p.checkout_session_id, p.id, p.session_id, p.payment_intent, v_amount,
          pg_catalog.left(request_refund.reason, 500), v_key,
          pg_catalog.jsonb_build_object(
            'payment_intent', p.payment_intent,
            'amount', v_amount,
            'reason', 'requested_by_customer',
            'metadata', pg_catalog.jsonb_build_object(
              'payment_id', p.id::text,
              'checkout_session_id', p.checkout_session_id,
              'reason', pg_catalog.left(request_refund.reason, 450)
            )
          ))
  returning * into v_request;
  return pg_catalog.jsonb_build_object(
    'outbox_id', v_request.id, 'amount', v_amount, 'currency', p.currency,
    'idempotency_key', v_key, 'payment_id', p.id
  );
end;
$$;
comment on function private.request_refund(public.payments, text) is
  'Gives a payment''s money back, in the caller''s transaction: the payment becomes refund_requested '
  'and a refund of what is not yet refunded (or on its way) is written to stripe_outbox with its '
  'exact parameters and its own key. Only from paid, consumed or refund_failed; anything else '
  'answers null and changes nothing, so asking twice refunds once. The caller holds the customer''s lock.';

create or replace function private.settle_payment(payment_id uuid) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  p public.payments%rowtype;
  v_session public.sessions%rowtype;
  v_succeeded integer;
  v_in_flight integer;
  v_paid integer;
  v_waiting boolean;
  v_status text;
  v_cancelled boolean := false;
begin
  select x.* into p from public.payments x where x.id = settle_payment.payment_id for update;
  select coalesce(pg_catalog.sum(r.amount) filter (where r.status = 'succeeded'), 0),
         coalesce(pg_catalog.sum(r.amount) filter (where r.status in ('pending', 'requires_action')), 0)
  into v_succeeded, v_in_flight
  from public.refunds r
  where r.payment_id = p.id;
  v_paid := coalesce(p.amount_paid, p.amount);
  -- Is one of our refund requests still queued or being sent?
  v_waiting := exists (select 1 from public.stripe_outbox o
                       where o.payment_id = p.id and o.kind = 'refund' and o.status = 'pending');

  v_status := case
    when p.status not in ('paid', 'consumed', 'refund_requested', 'refunded', 'refund_failed') then p.status
    when v_succeeded >= v_paid then 'refunded'
    when v_succeeded + v_in_flight >= v_paid then 'refund_requested'
    -- refunded too: Stripe may fail a refund after reporting it succeeded.
    when p.status in ('refund_requested', 'refunded') and v_in_flight = 0 and not v_waiting then 'refund_failed'
    when p.status = 'refunded' then 'refund_requested'
    else p.status
  end;

  -- A full refund that did not come from a request of ours (the dashboard): the session it paid
  -- for ends, once, if it has not started; a started one was delivered and is left to the audit.
  if v_status in ('refunded', 'refund_requested') and p.status = 'consumed' then
    select s.* into v_session from public.sessions s where s.id = p.session_id for update;
    if v_session.status in ('pending', 'waiting') then
      update public.session_assignments a
      set status = 'cancelled'
      where a.session_id = v_session.id and a.status in ('queued', 'offered');
      perform private.move_session(v_session, 'cancelled', 'cancelled', null,
        pg_catalog.jsonb_build_object('reason', 'refunded in Stripe'));
      v_cancelled := true;
    end if;
  end if;
  if v_status = 'refunded' then
    -- The money is back: a request of ours not yet sent is no longer needed.
    update public.stripe_outbox o
    set status = 'cancelled', locked_until = null, updated_at = pg_catalog.now(),
        last_error = 'not needed: the payment is refunded in full'
    where o.payment_id = p.id and o.kind = 'refund' and o.status = 'pending'
      and (o.locked_until is null or o.locked_until <= pg_catalog.now());
  end if;

  update public.payments x
  set amount_refunded = least(v_succeeded, v_paid), status = v_status
  where x.id = p.id
    and (x.amount_refunded, x.status) is distinct from (least(v_succeeded, v_paid), v_status);

  -- The timeline says "refunded" once per session (the request's event, or this one for a refund
  -- made outside); how the refund ends is the payment's status, shown in the session view.
  if v_status is distinct from p.status and p.session_id is not null and v_status = 'refunded'
     and not exists (select 1 from public.session_events e
                     where e.session_id = p.session_id and e.event_type = 'refunded') then
    perform private.log_event(p.session_id, 'refunded', null, pg_catalog.jsonb_build_object(
      'method', 'stripe', 'status', v_status, 'amount_refunded', v_succeeded, 'payment_id', p.id));
  end if;

  return pg_catalog.jsonb_build_object(
    'payment_id', p.id, 'status', v_status, 'previous_status', p.status,
    'amount', v_paid, 'amount_refunded', v_succeeded, 'in_flight', v_in_flight,
    'session_id', p.session_id, 'session_cancelled', v_cancelled
  );
end;
$$;
comment on function private.settle_payment(uuid) is
  'Derives a payment''s refund state from its refunds (Stripe''s word): refunded when succeeded '
  'refunds cover what was paid, refund_requested while in-flight ones would, refund_failed when a '
  'requested refund ended without the money back and nothing of ours is still queued. A full '
  'refund made outside the service cancels the unstarted session it paid for, once; a refund of '
  'ours still queued is cancelled once the money is back. The caller holds the customer''s lock.';

create or replace function public.record_charge_refund(
  refund_id text,
  payment_intent text,
  amount integer,
  status text,
  failure_reason text default null,
  payment_id uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
  v_ours boolean;
begin
  if refund_id is null or amount is null or status is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'refund_id, amount and status are required');
  end if;
  if refund_id !~ '^(re|pyr)_[A-Za-z0-9_]{1,250}$' or amount <= 0
     or status not in ('pending', 'requires_action', 'succeeded', 'failed', 'canceled') then
    perform private.raise_api_error(422, 'INVALID_REFUND', 'not a Stripe refund (re_..., amount > 0, a known status)');
  end if;

  select p.* into v_payment
  from public.payments p
  where (record_charge_refund.payment_intent is not null and p.payment_intent = record_charge_refund.payment_intent)
     or (record_charge_refund.payment_id is not null and p.id = record_charge_refund.payment_id)
  limit 1;
  if not found then
    return pg_catalog.jsonb_build_object('payment_id', null, 'recorded', false);
  end if;
  perform private.lock_customer(v_payment.customer_user_id);

  v_ours := exists (select 1 from public.stripe_outbox o
                    where o.payment_id = v_payment.id and o.kind = 'refund'
                      and o.stripe_object_id = record_charge_refund.refund_id)
            or record_charge_refund.payment_id is not null;
  insert into public.refunds as r (payment_id, stripe_refund_id, amount, status, origin, failure_reason)
  values (v_payment.id, refund_id, amount, status, case when v_ours then 'service' else 'outside' end,
          pg_catalog.left(failure_reason, 200))
  on conflict (stripe_refund_id) do update
    -- A refund only moves forward (pending, requires_action, succeeded, then failed or canceled),
    -- whatever order its events arrive in: a late "pending" never undoes "succeeded" or "failed".
    set status = case
          when pg_catalog.array_position(array['pending', 'requires_action', 'succeeded', 'failed', 'canceled'],
                                         excluded.status)
               > pg_catalog.array_position(array['pending', 'requires_action', 'succeeded', 'failed', 'canceled'],
                                           r.status)
          then excluded.status else r.status end,
        failure_reason = coalesce(excluded.failure_reason, r.failure_reason),
        origin = case when excluded.origin = 'service' then 'service' else r.origin end,
        updated_at = pg_catalog.now();

  return private.settle_payment(v_payment.id) || pg_catalog.jsonb_build_object('recorded', true);
end;
$$;
comment on function public.record_charge_refund(text, text, integer, text, text, uuid) is
  'What Stripe says of one refund (the create answer, refund.created/updated/failed, or a listing '
  'after charge.refunded): kept by its re_ id, moving only forward (a late "pending" never undoes '
  '"failed"), then the payment settled from all its refunds. Refunds of charges this service did '
  'not sell are ignored. Idempotent; service_role only.';

create or replace function private.write_session(
  customer_id uuid,
  plan public.plans,
  intake_id uuid,
  payment_method text,
  stripe_session_id text,
  amount_paid integer,
  urgent boolean,
  is_specialist boolean,
  preferred_mechanic_id uuid,
  routing_type text,
  intake jsonb,
  payment_id uuid default null
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_existing public.sessions%rowtype;
  v_session_id uuid;
  v_balance integer;
  v_constraint text;
  v_new_intake boolean;
begin
  -- One customer at a time, across every app and PostgREST instance: concurrent calls queue
  -- here, and each then sees what the previous one committed.
  perform private.lock_customer(customer_id);

  v_new_intake := write_session.intake is not null and not exists (
    select 1 from public.intakes i where i.id = write_session.intake_id);
  -- A retried intake (same client-generated intake id, nothing paid) answers its first session.
  if write_session.intake is not null and payment_method <> 'stripe' then
    select s.* into v_existing
    from public.sessions s
    where s.intake_id = write_session.intake_id and s.customer_user_id = customer_id;
    if found then
      return pg_catalog.jsonb_build_object(
        'session_id', v_existing.id, 'session_type', v_existing.type,
        'status', v_existing.status, 'created', false
      );
    end if;
  end if;

  -- At most one active session per customer.
  select s.* into v_existing
  from public.sessions s
  where s.customer_user_id = customer_id and s.is_active;
  if found then
    perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS',
      'You already have an active session',
      pg_catalog.jsonb_build_object(
        'activeSessionId', v_existing.id,
        'activeSessionType', v_existing.type,
        'activeSessionStatus', v_existing.status
      ));
  end if;
  if exists (select 1 from public.sessions s where s.intake_id = write_session.intake_id) then
    perform private.raise_api_error(409, 'INTAKE_ALREADY_USED',
      'this intake already has a session');
  end if;

  if payment_method = 'credits' then
    select coalesce(sum(c.delta), 0) into v_balance
    from public.credit_entries c
    where c.customer_user_id = customer_id;
    if v_balance < (write_session.plan).credit_cost then
      perform private.raise_api_error(402, 'INSUFFICIENT_CREDITS',
        pg_catalog.format('plan %s costs %s credits; the balance is %s',
          (write_session.plan).code, (write_session.plan).credit_cost, v_balance),
        pg_catalog.jsonb_build_object('required', (write_session.plan).credit_cost, 'balance', v_balance));
    end if;
  end if;

  -- The intake (when it came with the call), the session and everything that hangs off it.
  if v_new_intake then
    perform private.write_intake(customer_id, intake_id, (write_session.plan).code, write_session.intake,
      urgent, is_specialist, preferred_mechanic_id, routing_type);
  end if;
  begin
    with new_session as (
      insert into public.sessions
        (customer_user_id, type, status, plan, intake_id, stripe_session_id, payment_method,
         urgent, is_specialist, routing_type, preferred_mechanic_id, metadata)
      values (
        customer_id, (write_session.plan).session_type, 'pending', (write_session.plan).code, intake_id,
        write_session.stripe_session_id, write_session.payment_method,
        write_session.urgent, write_session.is_specialist, write_session.routing_type,
        write_session.preferred_mechanic_id,
        pg_catalog.jsonb_build_object('amount_paid', amount_paid, 'source', 'intake')
      )
      returning id
    ), participant as (
      insert into public.session_participants (session_id, user_id, role)
      select ns.id, customer_id, 'customer' from new_session ns
      on conflict (session_id, user_id) do update set role = excluded.role
    ), assignment as (
      insert into public.session_assignments
        (session_id, status, session_type, plan, urgent, routing_type, preferred_mechanic_id, offered_at)
      select ns.id, 'queued', (write_session.plan).session_type, (write_session.plan).code,
        write_session.urgent, write_session.routing_type, write_session.preferred_mechanic_id, pg_catalog.now()
      from new_session ns
    ), debit as (
      insert into public.credit_entries (customer_user_id, delta, reason, session_id)
      select customer_id, -(write_session.plan).credit_cost, 'session', ns.id
      from new_session ns
      where payment_method = 'credits'
    )
    insert into public.session_events (session_id, event_type, user_id, metadata)
    select ns.id, 'created', customer_id, pg_catalog.jsonb_build_object(
      'type', (write_session.plan).session_type,
      'plan', (write_session.plan).code,
      'payment_method', payment_method,
      'amount_paid', amount_paid,
      'urgent', urgent,
      'source', 'intake'
    )
    from new_session ns
    returning session_id into v_session_id;
  exception when unique_violation then
    -- Only reachable by a writer that skipped the lock above; the indexes still hold the line.
    get stacked diagnostics v_constraint = constraint_name;
    if v_constraint = 'sessions_one_active_per_customer' then
      perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS',
        'You already have an active session');
    end if;
    perform private.raise_api_error(409, 'SESSION_CONFLICT',
      pg_catalog.format('a concurrent request already created this session (%s)', v_constraint));
  end;

  -- A customer with a session needs no other Checkout: close the open ones through the outbox, and
  -- abandon create requests that have not come back (nobody has seen their URL).
  perform private.enqueue_expire_checkout(p)
  from public.payments p
  where p.customer_user_id = write_session.customer_id and p.status = 'open'
    and p.id is distinct from write_session.payment_id;
  update public.payments p set status = 'expired'
  where p.customer_user_id = write_session.customer_id and p.status = 'creating'
    and p.id is distinct from write_session.payment_id;

  return pg_catalog.jsonb_build_object(
    'session_id', v_session_id, 'session_type', (write_session.plan).session_type,
    'status', 'pending', 'created', true
  );
end;
$$;
comment on function private.write_session(
  uuid, public.plans, uuid, text, text, integer, boolean, boolean, uuid, text, jsonb, uuid
) is
  'The part of create_session_record every payment method shares: under the customer''s lock, '
  'refuse a second active session (409 naming it) or a used intake, check credits, then write the '
  'intake (when given), session, participant, queued assignment, credit debit and created event in '
  'one statement, and close the customer''s other open Checkouts. Raises PGRST errors; the paid '
  'path turns each into a refund.';

create or replace function private.consume_payment(
  customer_id uuid,
  plan text,
  intake_id uuid,
  stripe_session_id text,
  payment_id uuid,
  amount_paid integer,
  currency text,
  payment_intent text
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
  v_plan public.plans%rowtype;
  v_intake public.intakes%rowtype;
  v_preferred uuid;
  v_routing text;
  v_result jsonb;
  v_error jsonb;
  v_refund jsonb;
begin
  v_payment := private.lock_payment(stripe_session_id, payment_id);
  if v_payment.id is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'this service did not open that Checkout');
  end if;
  if v_payment.customer_user_id <> customer_id or v_payment.intake_id <> intake_id
     or v_payment.plan <> consume_payment.plan
     or v_payment.checkout_session_id <> stripe_session_id then
    perform private.raise_api_error(409, 'STRIPE_SESSION_MISMATCH',
      'this checkout session already paid for another intake');
  end if;

  -- Stripe's word (the caller verified it) that the money was taken: recorded first, whatever follows.
  if v_payment.status in ('creating', 'open', 'processing', 'expired', 'payment_failed') then
    update public.payments p set
      status = 'paid', paid_at = pg_catalog.now(),
      checkout_session_id = consume_payment.stripe_session_id,
      payment_intent = coalesce(p.payment_intent, pg_catalog.left(consume_payment.payment_intent, 255)),
      amount_paid = consume_payment.amount_paid
    where p.id = v_payment.id
    returning * into v_payment;
  end if;
  if v_payment.status = 'consumed' then
    return (select pg_catalog.jsonb_build_object(
      'session_id', s.id, 'session_type', s.type, 'status', s.status, 'created', false,
      'payment_id', v_payment.id, 'payment_status', v_payment.status)
      from public.sessions s where s.id = v_payment.session_id);
  end if;
  if v_payment.status <> 'paid' then
    -- Refunded, or on its way back: this money can never buy a session again.
    return pg_catalog.jsonb_build_object(
      'session_id', null, 'created', false, 'refunded', true,
      'payment_id', v_payment.id, 'payment_status', v_payment.status, 'reason', v_payment.refund_reason);
  end if;

  -- Paid and unused: a session, or (for any reason it cannot be one) a full refund, never neither.
  begin
    if v_payment.amount_paid is distinct from v_payment.amount
       or pg_catalog.lower(consume_payment.currency) is distinct from v_payment.currency then
      perform private.raise_api_error(422, 'AMOUNT_MISMATCH',
        pg_catalog.format('the checkout was for %s %s', v_payment.amount, v_payment.currency));
    end if;
    -- The price snapshot is honoured: the plan as it was sold, even if since deactivated or repriced.
    select p.* into v_plan from public.plans p where p.code = v_payment.plan;
    select i.* into v_intake from public.intakes i where i.id = v_payment.intake_id;
    -- A preferred mechanic who has left since: the session is offered to everyone instead.
    v_preferred := v_intake.preferred_mechanic_id;
    v_routing := v_intake.routing_type;
    if v_preferred is not null and not exists (
      select 1 from public.mechanics m where m.user_id = v_preferred and m.active
    ) then
      v_preferred := null;
      v_routing := 'broadcast';
    end if;
    v_result := private.write_session(
      v_payment.customer_user_id, v_plan, v_payment.intake_id, 'stripe', v_payment.checkout_session_id,
      v_payment.amount_paid, v_intake.urgent, v_intake.is_specialist, v_preferred, v_routing, null, v_payment.id);
  exception when sqlstate 'PGRST' then
    v_error := sqlerrm::jsonb;
  end;

  if v_error is not null then
    v_refund := private.request_refund(v_payment, v_error ->> 'code');
    return pg_catalog.jsonb_build_object(
      'session_id', null, 'created', false, 'refunded', true,
      'payment_id', v_payment.id, 'payment_status', 'refund_requested',
      'reason', v_error ->> 'code', 'details', (v_error ->> 'details')::jsonb,
      'refund', v_refund);
  end if;
  update public.payments p
  set status = 'consumed', session_id = (v_result ->> 'session_id')::uuid
  where p.id = v_payment.id;
  return v_result || pg_catalog.jsonb_build_object('payment_id', v_payment.id, 'payment_status', 'consumed');
end;
$$;
comment on function private.consume_payment(uuid, text, uuid, text, uuid, integer, text, text) is
  'create_session_record''s paid path, under the customer''s lock: records that Stripe took the money '
  '(paid), then turns a paid payment into exactly one session (consumed) or, when the session cannot '
  'be made for any reason (another active session, a used intake, an amount that does not match the '
  'snapshot), requests its full refund in the same transaction. A consumed payment answers its '
  'session; a refunded one answers refunded and creates nothing. The plan snapshot is honoured even '
  'if the plan was since deactivated or repriced; an inactive preferred mechanic means broadcast.';

create or replace function public.open_checkout(
  customer_id uuid,
  intake_id uuid,
  success_url text,
  cancel_url text,
  expires_in interval default '30 minutes'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_intake public.intakes%rowtype;
  v_plan public.plans%rowtype;
  v_active public.sessions%rowtype;
  v_payment public.payments%rowtype;
  v_id uuid := gen_random_uuid();
  v_expires timestamptz;
begin
  if customer_id is null or intake_id is null or success_url is null or cancel_url is null then
    perform private.raise_api_error(422, 'MISSING_FIELD',
      'customer_id, intake_id, success_url and cancel_url are required');
  end if;
  if expires_in is null or expires_in < interval '30 minutes' or expires_in > interval '23 hours' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'expires_in must be between 30 minutes and 23 hours');
  end if;
  perform private.lock_customer(customer_id);

  select i.* into v_intake
  from public.intakes i
  where i.id = open_checkout.intake_id and i.customer_user_id = open_checkout.customer_id;
  if not found then
    perform private.raise_api_error(404, 'INTAKE_NOT_FOUND', 'no such intake for this customer');
  end if;
  select p.* into v_plan from public.plans p where p.code = v_intake.plan and p.active;
  if not found then
    perform private.raise_api_error(404, 'UNKNOWN_PLAN',
      pg_catalog.format('plan %L is not offered', v_intake.plan));
  end if;
  if v_plan.is_free then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      pg_catalog.format('plan %s is free: nothing to pay', v_plan.code));
  end if;
  select s.* into v_active from public.sessions s where s.customer_user_id = customer_id and s.is_active;
  if found then
    perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS', 'You already have an active session',
      pg_catalog.jsonb_build_object('activeSessionId', v_active.id, 'activeSessionType', v_active.type,
                                    'activeSessionStatus', v_active.status));
  end if;
  if exists (select 1 from public.sessions s where s.intake_id = open_checkout.intake_id)
     or exists (select 1 from public.payments p where p.intake_id = open_checkout.intake_id
                and p.status in ('paid', 'consumed')) then
    perform private.raise_api_error(409, 'INTAKE_ALREADY_USED', 'this intake already has a session');
  end if;
  if exists (select 1 from public.payments p where p.intake_id = open_checkout.intake_id
             and p.status = 'processing') then
    perform private.raise_api_error(409, 'PAYMENT_PROCESSING',
      'this intake''s payment is being processed by the bank; its session follows when it clears');
  end if;

  -- A create request not confirmed for 2 minutes is abandoned (nobody saw its URL); a younger one
  -- is re-sent exactly as stored, so concurrent clicks share one Checkout.
  update public.payments p set status = 'expired'
  where p.intake_id = open_checkout.intake_id and p.status = 'creating'
    and p.created_at < pg_catalog.now() - interval '2 minutes';
  select p.* into v_payment
  from public.payments p
  where p.intake_id = open_checkout.intake_id
    and (p.status = 'creating'
         or (p.status = 'open' and p.checkout_url is not null
             and p.expires_at > pg_catalog.now() + interval '2 minutes'))
  order by p.attempt desc
  limit 1;
  if found then
    return pg_catalog.to_jsonb(v_payment) || pg_catalog.jsonb_build_object('reused', true);
  end if;

  -- Stripe accepts expires_at 30 minutes to 24 hours ahead; 2 minutes of margin keep a re-send valid.
  v_expires := pg_catalog.date_trunc('second', pg_catalog.now() + expires_in + interval '2 minutes');
  insert into public.payments (id, customer_user_id, intake_id, attempt, plan, amount, currency, status,
                               idempotency_key, request, expires_at)
  select v_id, customer_id, v_intake.id, coalesce(pg_catalog.max(p.attempt) + 1, 0), v_plan.code,
         v_plan.price_cents, v_plan.currency, 'creating', 'checkout-' || v_id::text,
         pg_catalog.jsonb_build_object(
           'mode', 'payment',
           'client_reference_id', customer_id::text,
           'line_items', pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
             'quantity', 1,
             'price_data', pg_catalog.jsonb_build_object(
               'currency', v_plan.currency,
               'unit_amount', v_plan.price_cents,
               'product_data', pg_catalog.jsonb_build_object('name',
                 pg_catalog.format('%s consultation (%s)', pg_catalog.initcap(v_plan.session_type), v_plan.code))
             )
           )),
           'metadata', pg_catalog.jsonb_build_object(
             'payment_id', v_id::text, 'customer_id', customer_id::text, 'intake_id', v_intake.id::text,
             'plan', v_plan.code, 'session_type', v_plan.session_type
           ),
           'payment_intent_data', pg_catalog.jsonb_build_object(
             'metadata', pg_catalog.jsonb_build_object('payment_id', v_id::text)
           ),
           'expires_at', extract(epoch from v_expires)::bigint,
           'success_url', success_url,
           'cancel_url', cancel_url
         ),
         v_expires
  from public.payments p
  where p.intake_id = v_intake.id
  returning * into v_payment;
  return pg_catalog.to_jsonb(v_payment) || pg_catalog.jsonb_build_object('reused', false);
end;
$$;
comment on function public.open_checkout(uuid, uuid, text, text, interval) is
  'The waiver''s Checkout: under the customer''s lock, refuses what can no longer be sold (an active '
  'session, a used intake, a payment still clearing), reuses an open Checkout or a create request '
  'still in flight, or writes a new payment (attempt n) with the catalog price as its snapshot and '
  'the exact Stripe request and key, before anything is sent. The service sends `request` with '
  '`idempotency_key` and records the answer with record_checkout_opened. service_role only.';

create or replace function public.record_checkout_opened(
  payment_id uuid,
  checkout_session_id text,
  checkout_url text,
  expires_at timestamptz
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
begin
  if payment_id is null or checkout_session_id is null or checkout_url is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'payment_id, checkout_session_id and checkout_url are required');
  end if;
  if checkout_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
    perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION', 'checkout_session_id must be a Checkout Session id (cs_...)');
  end if;
  v_payment := private.lock_payment(checkout_session_id, payment_id);
  if v_payment.id is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'no such payment');
  end if;
  if v_payment.id <> payment_id or v_payment.checkout_session_id <> checkout_session_id then
    perform private.raise_api_error(409, 'STRIPE_SESSION_MISMATCH', 'this Checkout belongs to another payment');
  end if;
  update public.payments p set
    checkout_session_id = record_checkout_opened.checkout_session_id,
    checkout_url = pg_catalog.left(record_checkout_opened.checkout_url, 2000),
    expires_at = coalesce(record_checkout_opened.expires_at, p.expires_at),
    status = case when p.status = 'creating' then 'open' else p.status end
  where p.id = v_payment.id
  returning * into v_payment;
  -- Abandoned meanwhile (the customer got a session another way): close it at Stripe too.
  if v_payment.status = 'expired' then
    perform private.enqueue_expire_checkout(v_payment);
  end if;
  return pg_catalog.to_jsonb(v_payment);
end;
$$;
comment on function public.record_checkout_opened(uuid, text, text, timestamptz) is
  'Stripe''s answer to a payment''s Checkout create request: its cs_ id and URL, creating -> open. '
  'Idempotent (retries and concurrent clicks record the same answer). A payment abandoned while '
  'the request was in flight stays expired and its Checkout is expired at Stripe. service_role only.';

create or replace function public.record_checkout_status(
  checkout_session_id text,
  status text,
  payment_id uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
  v_to text;
begin
  if checkout_session_id is null or status is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'checkout_session_id and status are required');
  end if;
  if status not in ('processing', 'expired', 'payment_failed') then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'status must be processing, expired or payment_failed');
  end if;
  v_payment := private.lock_payment(checkout_session_id, payment_id);
  if v_payment.id is null then
    return pg_catalog.jsonb_build_object('payment_id', null, 'changed', false);
  end if;
  -- Only a Checkout that has not taken money moves here; late or repeated events change nothing.
  v_to := case
    when status = 'processing' and v_payment.status in ('creating', 'open') then 'processing'
    when status = 'expired' and v_payment.status in ('creating', 'open', 'processing') then 'expired'
    when status = 'payment_failed' and v_payment.status = 'processing' then 'payment_failed'
  end;
  if v_to is not null then
    update public.payments p
    set status = v_to, checkout_session_id = coalesce(p.checkout_session_id, record_checkout_status.checkout_session_id)
    where p.id = v_payment.id
    returning * into v_payment;
  end if;
  return pg_catalog.jsonb_build_object('payment_id', v_payment.id, 'status', v_payment.status,
                                       'changed', v_to is not null);
end;
$$;
comment on function public.record_checkout_status(text, text, uuid) is
  'What Stripe says of a Checkout that has not taken money: completed but the bank payment is '
  'still clearing (processing), expired, or its async payment failed. Moves an unpaid payment '
  'only; events about paid ones, late or repeated, change nothing. service_role only.';

create or replace function private.refund_session(session public.sessions, user_id uuid, cause text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  s public.sessions%rowtype := refund_session.session;
  v_payment public.payments%rowtype;
  v_request jsonb;
  v_credits integer;
  v_entry bigint;
  v_refund jsonb;
begin
  if s.payment_method = 'stripe' then
    select p.* into v_payment from public.payments p where p.session_id = s.id for update;
    v_request := private.request_refund(v_payment, 'session ' || refund_session.cause);
    if v_request is null then
      return;  -- already refunded or on its way back
    end if;
    v_refund := pg_catalog.jsonb_build_object(
      'method', 'stripe', 'status', 'requested', 'outbox_id', v_request -> 'outbox_id',
      'payment_id', v_payment.id, 'checkout_session_id', v_payment.checkout_session_id,
      'amount', v_request -> 'amount'
    );
  elsif s.payment_method = 'credits' then
    select -c.delta into v_credits
    from public.credit_entries c
    where c.session_id = s.id and c.reason = 'session';
    if v_credits is null then
      return;
    end if;
    insert into public.credit_entries (customer_user_id, delta, reason, session_id)
    values (s.customer_user_id, v_credits, 'refund', s.id)
    on conflict (session_id) where reason = 'refund' do nothing
    returning id into v_entry;
    if v_entry is null then
      return;
    end if;
    v_refund := pg_catalog.jsonb_build_object(
      'method', 'credits', 'status', 'credited', 'credits', v_credits, 'credit_entry_id', v_entry
    );
  else
    return;  -- free: nothing was paid
  end if;
  perform private.log_event(s.id, 'refunded', refund_session.user_id,
    v_refund || pg_catalog.jsonb_build_object('reason', refund_session.cause));
end;
$$;
comment on function private.refund_session(public.sessions, uuid, text) is
  'Gives back what a session cost, in the caller''s transaction: a Stripe-paid session''s payment '
  'goes consumed -> refund_requested with its refund in stripe_outbox (private.request_refund), a '
  'credits session gets a ledger entry returning the debit; either way a refunded event records '
  'it. Free sessions, and payments already on their way back: nothing.';

create or replace function private.lock_paid_session(payment_intent text) returns public.sessions
language plpgsql
set search_path = ''
as $$
declare
  v_session_id uuid;
begin
  select p.session_id into v_session_id
  from public.payments p
  where p.payment_intent = lock_paid_session.payment_intent and p.session_id is not null;
  if not found then
    return null;
  end if;
  return private.lock_session(v_session_id);
end;
$$;
comment on function private.lock_paid_session(text) is
  'The session a payment intent paid for (through public.payments), locked as every transition '
  'locks it; null when no session was bought with it.';

create or replace function public.claim_stripe_request(
  request_id bigint,
  lease interval default '5 minutes'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
begin
  if request_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'request_id is required');
  end if;
  if lease is null or lease <= interval '0' or lease > interval '1 hour' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'lease must be positive and at most 1 hour');
  end if;
  update public.stripe_outbox o set
    locked_until = pg_catalog.now() + lease,
    attempts = o.attempts + 1,
    updated_at = pg_catalog.now()
  where o.id = (
    select d.id from public.stripe_outbox d
    where d.id = claim_stripe_request.request_id
      and d.status = 'pending'
      and d.next_attempt_at <= pg_catalog.now()
      and (d.locked_until is null or d.locked_until <= pg_catalog.now())
    for update skip locked
  )
  returning o.* into v_row;
  if not found then
    return null;  -- not due, or another worker has it
  end if;
  return pg_catalog.to_jsonb(v_row);
end;
$$;
comment on function public.claim_stripe_request(bigint, interval) is
  'Claims one Stripe request by id, as claim_stripe_requests claims many: so the request that '
  'decided a refund (a webhook delivery) sends its own row at once and never waits on other '
  'customers'' Stripe calls. null when the row is not due or another worker holds it. service_role only.';

create or replace function public.finish_stripe_request(
  id bigint,
  outcome text,
  stripe_object_id text default null,
  error text default null,
  retry_in interval default null,
  refund jsonb default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
  v_payment public.payments%rowtype;
  v_settled jsonb;
begin
  if outcome is null or outcome not in ('sent', 'failed', 'retry', 'cancelled') then
    perform private.raise_api_error(422, 'INVALID_OUTCOME', 'outcome must be sent, failed, retry or cancelled');
  end if;
  if retry_in is not null and (retry_in < interval '0' or retry_in > interval '7 days') then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'retry_in must be between 0 and 7 days');
  end if;

  select o.* into v_row from public.stripe_outbox o where o.id = finish_stripe_request.id;
  if not found then
    perform private.raise_api_error(404, 'REQUEST_NOT_FOUND', 'no such Stripe request');
  end if;
  if v_row.payment_id is not null then
    select p.customer_user_id into v_payment.customer_user_id from public.payments p where p.id = v_row.payment_id;
    perform private.lock_customer(v_payment.customer_user_id);
  end if;
  select o.* into v_row from public.stripe_outbox o where o.id = finish_stripe_request.id for update;
  if v_row.status <> 'pending' then
    -- A worker whose lease ran out reports what another worker already reported: that is done.
    return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', false);
  end if;

  update public.stripe_outbox o set
    status = case outcome when 'retry' then 'pending' else outcome end,
    sent_at = case when outcome = 'sent' then pg_catalog.now() end,
    stripe_object_id = coalesce(pg_catalog.left(finish_stripe_request.stripe_object_id, 255), o.stripe_object_id),
    last_error = case when outcome = 'sent' then o.last_error else pg_catalog.left(error, 2000) end,
    next_attempt_at = case when outcome = 'retry' then pg_catalog.now() + coalesce(
      retry_in, private.stripe_retry_delay(o.attempts)) else o.next_attempt_at end,
    locked_until = null,
    updated_at = pg_catalog.now()
  where o.id = finish_stripe_request.id
  returning o.* into v_row;

  if v_row.payment_id is not null and v_row.kind = 'refund' then
    if outcome = 'sent' and refund is not null then
      -- Stripe's answer is the refund's first status (often pending, sometimes already failed).
      perform public.record_charge_refund(
        coalesce(refund ->> 'id', v_row.stripe_object_id), refund ->> 'payment_intent',
        coalesce((refund ->> 'amount')::integer, v_row.amount), coalesce(refund ->> 'status', 'pending'),
        refund ->> 'failure_reason', v_row.payment_id);
    end if;
    v_settled := private.settle_payment(v_row.payment_id);
  elsif v_row.payment_id is not null and v_row.kind = 'expire_checkout' and outcome in ('sent', 'cancelled') then
    update public.payments p set status = 'expired'
    where p.id = v_row.payment_id and p.status in ('creating', 'open');
  end if;

  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', true, 'payment', v_settled);
end;
$$;
comment on function public.finish_stripe_request(bigint, text, text, text, interval, jsonb) is
  'Records what Stripe answered a request: sent (with Stripe''s object id; for a refund, the refund '
  'itself, whose status the payment then follows), failed (refused: kept with the reason, never '
  'retried; a refused refund leaves the payment refund_failed unless other refunds cover it), retry '
  '(transient: pending again after retry_in or the back-off of private.stripe_retry_delay) or '
  'cancelled (no longer needed). A request another worker already finished counts as done '
  '(changed false). service_role only.';

create or replace function public.create_session_record(
  customer_id uuid,
  plan text,
  intake_id uuid,
  payment_method text,
  type text default null,
  stripe_session_id text default null,
  amount_paid integer default null,
  currency text default null,
  customer_email text default null,
  urgent boolean default false,
  is_specialist boolean default false,
  preferred_mechanic_id uuid default null,
  routing_type text default 'broadcast',
  intake jsonb default null,
  payment_intent text default null,
  payment_id uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_plan public.plans%rowtype;
  v_intake public.intakes%rowtype;
  v_routing text := coalesce(create_session_record.routing_type, 'broadcast');
begin
  -- 1. Validate everything the caller sent against what the database knows.
  if customer_id is null or intake_id is null or plan is null or payment_method is null then
    perform private.raise_api_error(422, 'MISSING_FIELD',
      'customer_id, plan, intake_id and payment_method are required');
  end if;
  if payment_method not in ('free', 'stripe', 'credits') then
    perform private.raise_api_error(422, 'INVALID_PAYMENT_METHOD',
      'payment_method must be free, stripe or credits');
  end if;
  if v_routing not in ('broadcast', 'workshop_only', 'hybrid', 'priority_broadcast') then
    perform private.raise_api_error(422, 'INVALID_ROUTING_TYPE',
      'routing_type must be broadcast, workshop_only, hybrid or priority_broadcast');
  end if;
  if create_session_record.type is not null
     and create_session_record.type not in ('chat', 'video', 'diagnostic') then
    perform private.raise_api_error(422, 'INVALID_TYPE', 'type must be chat, video or diagnostic');
  end if;
  if customer_email is not null
     and (pg_catalog.char_length(customer_email) > 320 or customer_email !~ '^[^@\s]+@[^@\s]+$') then
    perform private.raise_api_error(422, 'INVALID_EMAIL', 'customer_email is not an email address');
  end if;

  -- A paid plan is sold at its snapshot (public.payments), so it may have left the catalog since.
  select p.* into v_plan
  from public.plans p
  where p.code = create_session_record.plan and (p.active or payment_method = 'stripe');
  if not found then
    perform private.raise_api_error(404, 'UNKNOWN_PLAN',
      pg_catalog.format('plan %L is not offered', pg_catalog.left(create_session_record.plan, 40)));
  end if;

  if create_session_record.type is not null and create_session_record.type <> v_plan.session_type then
    perform private.raise_api_error(422, 'TYPE_PLAN_MISMATCH',
      pg_catalog.format('plan %s is a %s session, not %s',
        v_plan.code, v_plan.session_type, create_session_record.type));
  end if;

  if v_plan.is_free <> (payment_method = 'free') then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      pg_catalog.format('plan %s cannot be paid with %s', v_plan.code, payment_method));
  end if;
  if payment_method = 'stripe' then
    if stripe_session_id is null
       or stripe_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
      perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION',
        'a stripe payment needs the Checkout Session id (cs_...)');
    end if;
    if amount_paid is null or currency is null then
      perform private.raise_api_error(422, 'AMOUNT_MISMATCH', 'a stripe payment needs amount_paid and currency');
    end if;
  elsif payment_method = 'credits' and v_plan.credit_cost is null then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      pg_catalog.format('plan %s cannot be paid with credits', v_plan.code));
  elsif stripe_session_id is not null or payment_id is not null then
    perform private.raise_api_error(422, 'PAYMENT_METHOD_MISMATCH',
      'stripe_session_id and payment_id are only for payment_method stripe');
  elsif coalesce(amount_paid, 0) <> 0 then
    perform private.raise_api_error(422, 'AMOUNT_MISMATCH',
      pg_catalog.format('nothing is paid with %s', payment_method));
  end if;

  -- 2. Paid: the payment decides (one session or one full refund), under the customer's lock.
  if payment_method = 'stripe' then
    return private.consume_payment(customer_id, v_plan.code, intake_id, stripe_session_id, payment_id,
      amount_paid, currency, payment_intent);
  end if;

  -- 3. Free or credits. With `intake`, the intake is written in this transaction (unless a retry wrote it).
  select i.* into v_intake
  from public.intakes i
  where i.id = create_session_record.intake_id and i.customer_user_id = customer_id;
  if not found and create_session_record.intake is null then
    perform private.raise_api_error(404, 'INTAKE_NOT_FOUND',
      'no such intake for this customer');
  end if;
  if found and v_intake.plan <> v_plan.code then
    perform private.raise_api_error(422, 'INTAKE_PLAN_MISMATCH',
      pg_catalog.format('the intake is for plan %s', v_intake.plan));
  end if;

  if preferred_mechanic_id is not null and not exists (
    select 1 from public.mechanics m
    where m.user_id = create_session_record.preferred_mechanic_id and m.active
  ) then
    perform private.raise_api_error(404, 'MECHANIC_NOT_FOUND',
      'the preferred mechanic does not exist or is not active');
  end if;

  return private.write_session(customer_id, v_plan, intake_id, payment_method, null, amount_paid,
    coalesce(urgent, false), coalesce(is_specialist, false), preferred_mechanic_id, v_routing,
    create_session_record.intake);
end;
$$;

comment on function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text, uuid
) is
  'Creates a consultation session with its participant, queued assignment, created event and '
  'credit debit in one transaction, so a failure leaves nothing half-made. A per-customer advisory '
  'lock makes "no other active session" true under any concurrency, and a repeated intake id '
  '(clients retry) returns the first result. Paid (stripe): the Checkout''s payment is consumed '
  'in the same transaction, or refunded in full when the session cannot be made; a repeated '
  'Checkout (Stripe retries) answers its session, a refunded one creates nothing. Errors carry an '
  'HTTP status and a stable code. service_role only: the payment fields are trusted, so customers '
  'must never call it directly.';

create or replace function public.enqueue_stripe_request(
  kind text,
  checkout_session_id text,
  reason text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_payment public.payments%rowtype;
  v_row public.stripe_outbox%rowtype;
begin
  if kind is null or kind not in ('refund', 'expire_checkout') then
    perform private.raise_api_error(422, 'INVALID_KIND', 'kind must be refund or expire_checkout');
  end if;
  if checkout_session_id is null or checkout_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
    perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION',
      'checkout_session_id must be a Checkout Session id (cs_...)');
  end if;
  v_payment := private.lock_payment(checkout_session_id);
  if v_payment.id is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'this service did not open that Checkout');
  end if;
  if kind = 'refund' then
    if v_payment.status = 'consumed' and exists (
      select 1 from public.sessions s where s.id = v_payment.session_id and s.status <> 'expired'
        and s.status <> 'cancelled'
    ) then
      perform private.raise_api_error(409, 'PAYMENT_IN_USE',
        'this payment bought a session that has not ended unstarted: cancel the session instead',
        pg_catalog.jsonb_build_object('session_id', v_payment.session_id));
    end if;
    perform private.request_refund(v_payment, coalesce(reason, 'asked by an operator'));
  else
    perform private.enqueue_expire_checkout(v_payment);
  end if;
  select o.* into v_row
  from public.stripe_outbox o
  where o.payment_id = v_payment.id and o.kind = enqueue_stripe_request.kind
  order by o.id desc
  limit 1;
  if not found then
    perform private.raise_api_error(409, 'NOTHING_TO_SEND',
      pg_catalog.format('nothing to send: the payment is %s', v_payment.status),
      pg_catalog.jsonb_build_object('payment_status', v_payment.status));
  end if;
  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object(
    'payment_status', (select p.status from public.payments p where p.id = v_payment.id));
end;
$$;
comment on function public.enqueue_stripe_request(text, text, text) is
  'An operator''s request to Stripe for a payment this service sold: refund (a paid payment that '
  'bought nothing, or whose refund failed: a new request with its own key) or expire_checkout (an '
  'open Checkout). Idempotent: asking again while a request is on its way answers that request. A '
  'payment whose session is pending, live or completed is refused (cancel the session instead). '
  'service_role only: it decides where money goes.';

create or replace function public.payment_audit(
  since timestamptz default null,
  grace interval default '15 minutes'
) returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  with payment as (
    select p.*, s.status as session_status
    from public.payments p
    left join public.sessions s on s.id = p.session_id
    where payment_audit.since is null or p.created_at >= payment_audit.since
  ), problem as (
    select p.id as payment_id, p.checkout_session_id, p.status, p.session_id, p.session_status,
           p.amount, p.amount_refunded, v.problem, v.action
    from payment p
    cross join lateral (
      select 'paid but neither used nor refunded since ' || p.paid_at::text,
             'pysvc stripe reconcile (it makes the session or the refund)'
      where p.status = 'paid' and p.paid_at < pg_catalog.now() - payment_audit.grace
      union all
      select 'used by a session that is ' || coalesce(p.session_status, 'missing') || ', and not refunded',
             'pysvc payments refund ' || p.id::text
      where p.status = 'consumed' and (p.session_status is null or p.session_status in ('cancelled', 'expired'))
      union all
      select 'refund requested ' || p.updated_at::text || ' and not confirmed by Stripe',
             'pysvc outbox run; then look the refund up in Stripe''s dashboard'
      where p.status = 'refund_requested' and p.updated_at < pg_catalog.now() - interval '1 day'
      union all
      select 'refund failed' || coalesce(': ' || (
               select r.failure_reason from public.refunds r
               where r.payment_id = p.id and r.status in ('failed', 'canceled')
               order by r.updated_at desc limit 1), ''),
             'pysvc payments refund ' || p.id::text || ' (a new refund), or refund it in Stripe''s dashboard'
      where p.status = 'refund_failed'
      union all
      select 'refunded in full and its session is ' || p.session_status,
             'a goodwill refund of a delivered session needs nothing; otherwise recover the money'
      where p.status in ('refunded', 'refund_requested') and p.session_status in ('pending', 'waiting', 'live', 'completed')
    ) as v (problem, action)
    union all
    select null, s.stripe_session_id, null, s.id, s.status, null, null,
           'a Stripe-paid session without a payment record', 'find its Checkout in Stripe''s dashboard'
    from public.sessions s
    where s.payment_method = 'stripe'
      and (payment_audit.since is null or s.created_at >= payment_audit.since)
      and not exists (select 1 from public.payments p where p.session_id = s.id)
  )
  -- Aliased: inside `problem`, the bare name `problem` is its text column, not the row.
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(violation) order by violation.checkout_session_id),
                  '[]'::jsonb)
  from problem as violation;
$$;
comment on function public.payment_audit(timestamptz, interval) is
  'The money rule, checked: every payment that took money ends as exactly one session (consumed, '
  'its session not ended unstarted) or one full refund (then no pending, live or completed session). '
  'Lists each payment that breaks it (or has been in between for longer than `grace`: paid and '
  'unused, a refund unconfirmed for a day, a refund that failed) with what to do. Empty means the '
  'books balance. service_role only.';

create or replace function public.refund_payment(payment_id uuid, reason text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_checkout text;
begin
  if payment_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'payment_id is required');
  end if;
  select p.checkout_session_id into v_checkout from public.payments p where p.id = refund_payment.payment_id;
  if not found or v_checkout is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'no such payment');
  end if;
  return public.enqueue_stripe_request('refund', v_checkout, coalesce(reason, 'asked by an operator'));
end;
$$;
comment on function public.refund_payment(uuid, text) is
  'An operator''s full refund of a payment by its id (pysvc payments refund): what the audit '
  'suggests for refund_failed or a paid payment that bought nothing. Same rules as '
  'enqueue_stripe_request(''refund'', …). service_role only.';

create or replace function public.ops_stats(stuck_after interval default '10 minutes')
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select pg_catalog.jsonb_build_object(
    'inbox', pg_catalog.jsonb_build_object(
      'received', (select pg_catalog.count(*) from public.stripe_events e where e.status = 'received'),
      'stuck', (select pg_catalog.count(*) from public.stripe_events e
                where e.status = 'received' and e.received_at < pg_catalog.now() - ops_stats.stuck_after),
      'failed', (select pg_catalog.count(*) from public.stripe_events e where e.status = 'failed')
    ),
    -- Every kind the table allows, each with every status, so a quiet kind reads 0 rather than nothing.
    'outbox', (
      select pg_catalog.jsonb_object_agg(c.kind, c.counts)
      from (
        select k.kind, pg_catalog.jsonb_build_object(
          'pending', pg_catalog.count(o.id) filter (where o.status = 'pending'),
          'sent', pg_catalog.count(o.id) filter (where o.status = 'sent'),
          'failed', pg_catalog.count(o.id) filter (where o.status = 'failed'),
          'cancelled', pg_catalog.count(o.id) filter (where o.status = 'cancelled')
        ) as counts
        from (values ('refund'), ('expire_checkout')) as k (kind)
        left join public.stripe_outbox o on o.kind = k.kind
        group by k.kind
      ) c
    ),
    -- Payments in the states an operator acts on (the settled ones only grow).
    'payments', (
      select pg_catalog.jsonb_object_agg(k.status, (
        select pg_catalog.count(*) from public.payments p where p.status = k.status))
      from (values ('paid'), ('refund_requested'), ('refund_failed'), ('processing')) as k (status)
    ),
    'audit_violations', pg_catalog.jsonb_array_length(
      public.payment_audit(pg_catalog.now() - interval '90 days'))
  );
$$;
comment on function public.ops_stats(interval) is
  'Operator numbers for GET /metrics, in one call: Stripe events received and not finished '
  '(stuck: received longer ago than stuck_after, i.e. a crash or an outage left them), failed '
  'events, Stripe outbox requests by kind and status, payments waiting on something (paid, '
  'refund_requested, refund_failed, processing) and the money audit''s violations over the last 90 '
  'days. Read-only; service_role only, because the counts describe every customer''s payments.';

create trigger payments_check_transition
  before update on public.payments
  for each row execute function private.check_payment_transition();

-- Move what public.checkouts and the sessions knew into payments: one row per Checkout this service
-- opened (attempts numbered per intake), and one per Stripe-paid session older than that table.
insert into public.payments (
  customer_user_id, intake_id, attempt, plan, amount, currency, status, idempotency_key, request,
  checkout_session_id, checkout_url, expires_at, payment_intent, amount_paid, amount_refunded,
  session_id, paid_at, created_at
)
select c.customer_user_id, c.intake_id, c.attempt, i.plan, coalesce(paid.amount, pl.price_cents), pl.currency,
  case
    when refund.status = 'sent' and paid.amount is not null then 'refunded'
    when refund.id is not null then 'refund_requested'
    when s.id is not null then 'consumed'
    when c.status = 'complete' then 'paid'
    when c.status = 'expired' or c.expires_at < pg_catalog.now() then 'expired'
    else 'open'
  end,
  'checkout-' || c.intake_id::text || '-' || c.attempt::text, '{}'::jsonb,
  c.id, c.url, coalesce(c.expires_at, c.created_at + interval '30 minutes'),
  s.metadata ->> 'payment_intent', paid.amount,
  case when refund.status = 'sent' and paid.amount is not null then paid.amount else 0 end,
  case when refund.id is null then s.id end,
  case when s.id is not null or c.status = 'complete' or refund.id is not null then c.updated_at end,
  c.created_at
from (
  select c.*, (pg_catalog.row_number() over (partition by c.intake_id order by c.created_at, c.id) - 1)::integer
    as attempt
  from public.checkouts c
) c
join public.intakes i on i.id = c.intake_id
join public.plans pl on pl.code = i.plan and pl.price_cents > 0
left join public.sessions s on s.stripe_session_id = c.id
left join lateral (select ((s.metadata ->> 'amount_paid')::integer) as amount) paid on true
left join public.stripe_outbox refund on refund.kind = 'refund' and refund.checkout_session_id = c.id;

insert into public.payments (
  customer_user_id, intake_id, attempt, plan, amount, currency, status, idempotency_key, request,
  checkout_session_id, expires_at, payment_intent, amount_paid, amount_refunded, session_id, paid_at, created_at
)
select s.customer_user_id, s.intake_id,
  coalesce((select pg_catalog.max(p.attempt) + 1 from public.payments p where p.intake_id = s.intake_id), 0),
  s.plan, coalesce((s.metadata ->> 'amount_paid')::integer, pl.price_cents), pl.currency,
  case when refund.status = 'sent' then 'refunded' when refund.id is not null then 'refund_requested' else 'consumed' end,
  'checkout-' || s.stripe_session_id, '{}'::jsonb, s.stripe_session_id, s.created_at,
  s.metadata ->> 'payment_intent', coalesce((s.metadata ->> 'amount_paid')::integer, pl.price_cents),
  case when refund.status = 'sent' then coalesce((s.metadata ->> 'amount_paid')::integer, pl.price_cents) else 0 end,
  case when refund.id is null then s.id end, s.created_at, s.created_at
from public.sessions s
join public.plans pl on pl.code = s.plan and pl.price_cents > 0
left join public.stripe_outbox refund on refund.kind = 'refund' and refund.checkout_session_id = s.stripe_session_id
where s.stripe_session_id is not null
  and not exists (select 1 from public.payments p where p.checkout_session_id = s.stripe_session_id);

update public.stripe_outbox o set payment_id = p.id
from public.payments p
where p.checkout_session_id = o.checkout_session_id;

drop function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text
);
drop function public.enqueue_stripe_request(text, text, text, uuid, text);
drop function public.finish_stripe_request(bigint, text, text, text, interval);
drop function public.record_charge_refund(text, integer, integer, text);
drop index public.sessions_payment_intent_idx;
drop table public.checkouts;

-- Helpers are for the functions above only; the API functions are service_role's alone.
revoke all on function private.check_payment_transition() from public;
revoke all on function private.lock_payment(text, uuid) from public;
revoke all on function private.request_refund(public.payments, text) from public;
revoke all on function private.settle_payment(uuid) from public;
revoke all on function private.enqueue_expire_checkout(public.payments) from public;
revoke all on function private.write_session(
  uuid, public.plans, uuid, text, text, integer, boolean, boolean, uuid, text, jsonb, uuid
) from public;
revoke all on function private.consume_payment(uuid, text, uuid, text, uuid, integer, text, text) from public;
revoke all on function private.stripe_retry_delay(integer) from public;

revoke all on function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text, uuid
) from public, anon, authenticated;
grant execute on function public.create_session_record(
  uuid, text, uuid, text, text, text, integer, text, text, boolean, boolean, uuid, text, jsonb, text, uuid
) to service_role;
revoke all on function public.open_checkout(uuid, uuid, text, text, interval) from public, anon, authenticated;
grant execute on function public.open_checkout(uuid, uuid, text, text, interval) to service_role;
revoke all on function public.record_checkout_opened(uuid, text, text, timestamptz) from public, anon, authenticated;
grant execute on function public.record_checkout_opened(uuid, text, text, timestamptz) to service_role;
revoke all on function public.record_checkout_status(text, text, uuid) from public, anon, authenticated;
grant execute on function public.record_checkout_status(text, text, uuid) to service_role;
revoke all on function public.record_charge_refund(text, text, integer, text, text, uuid)
  from public, anon, authenticated;
grant execute on function public.record_charge_refund(text, text, integer, text, text, uuid) to service_role;
revoke all on function public.enqueue_stripe_request(text, text, text) from public, anon, authenticated;
grant execute on function public.enqueue_stripe_request(text, text, text) to service_role;
revoke all on function public.claim_stripe_request(bigint, interval) from public, anon, authenticated;
grant execute on function public.claim_stripe_request(bigint, interval) to service_role;
revoke all on function public.finish_stripe_request(bigint, text, text, text, interval, jsonb)
  from public, anon, authenticated;
grant execute on function public.finish_stripe_request(bigint, text, text, text, interval, jsonb) to service_role;
revoke all on function public.payment_audit(timestamptz, interval) from public, anon, authenticated;
grant execute on function public.payment_audit(timestamptz, interval) to service_role;
revoke all on function public.refund_payment(uuid, text) from public, anon, authenticated;
grant execute on function public.refund_payment(uuid, text) to service_role;
