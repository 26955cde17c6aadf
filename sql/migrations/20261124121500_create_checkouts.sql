-- Stripe Checkout Sessions this service opened, so that an open one can be closed (expired through
-- the Stripe outbox) once the customer has a session another way, instead of being paid and then
-- refunded; and so that signing the waiver again after expiry opens a fresh one.
create table public.checkouts (
  id text primary key check (id ~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$'),
  intake_id uuid not null references public.intakes (id) on delete cascade,
  customer_user_id uuid not null references auth.users (id) on delete cascade,
  status text not null default 'open' check (status in ('open', 'complete', 'expired')),
  url text check (char_length(url) <= 2000),
  expires_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index checkouts_intake_id_idx on public.checkouts (intake_id);
create index checkouts_open_per_customer_idx on public.checkouts (customer_user_id) where status = 'open';
comment on table public.checkouts is
  'Checkout Sessions opened for intakes: open until Stripe completes or expires them. An open one '
  'is expired through stripe_outbox when its customer gets a session by another path.';

alter table public.checkouts enable row level security;
revoke all on table public.checkouts from anon, authenticated;

-- Charges are matched to sessions through their payment intent (charge.refunded, disputes).
create index sessions_payment_intent_idx on public.sessions ((metadata ->> 'payment_intent'))
  where metadata ? 'payment_intent';
