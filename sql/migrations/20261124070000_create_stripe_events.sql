-- Stripe delivers every webhook at least once, sometimes concurrently and out of order. Each event
-- id is recorded once; the status says whether it has been durably handled, so a retry of an
-- unfinished event is processed again and a replay of a finished one is only acknowledged.
create table public.stripe_events (
  id text primary key check (id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
  type text not null check (char_length(type) between 1 and 100),
  livemode boolean not null default false,
  status text not null default 'received'
    check (status in ('received', 'processed', 'ignored', 'failed', 'refunded')),
  checkout_session_id text check (char_length(checkout_session_id) <= 255),
  session_id uuid references public.sessions (id) on delete set null,
  outcome jsonb not null default '{}' check (jsonb_typeof(outcome) = 'object'),
  payload jsonb not null,
  received_at timestamptz not null default now(),
  handled_at timestamptz
);
create index stripe_events_session_id_idx on public.stripe_events (session_id);
create index stripe_events_checkout_session_id_idx on public.stripe_events (checkout_session_id);
comment on table public.stripe_events is
  'Webhook inbox and audit trail: one row per Stripe event id, with what was done about it '
  '(processed into a session, ignored, failed validation, or refunded because it could not be honoured).';

alter table public.stripe_events enable row level security;
revoke all on table public.stripe_events from anon, authenticated;
