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
  constraint payments_refunded_in_full check (status <> 'refunded' or amount_refunded >= amount),
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
