-- The consultation schema: the plan catalog the server trusts, intakes, sessions and what hangs
-- off them, mechanics and a credits ledger. Every rule that can live here does: enumerations are
-- CHECKs, and "one active session per customer" is a partial unique index.

create table public.plans (
  code text primary key check (code ~ '^[a-z0-9][a-z0-9-]{0,39}$'),
  session_type text not null check (session_type in ('chat', 'video', 'diagnostic')),
  price_cents integer not null check (price_cents >= 0),
  currency text not null default 'usd' check (currency ~ '^[a-z]{3}$'),
  is_free boolean not null,
  credit_cost integer check (credit_cost > 0),
  active boolean not null default true,
  constraint plans_free_means_no_price check (is_free = (price_cents = 0)),
  constraint plans_free_costs_no_credits check (not is_free or credit_cost is null)
);
comment on table public.plans is
  'The catalog of plans. Prices are read from here, never from the client or Stripe metadata.';

create table public.mechanics (
  user_id uuid primary key references auth.users (id) on delete cascade,
  display_name text not null check (char_length(display_name) between 1 and 100),
  is_specialist boolean not null default false,
  active boolean not null default true,
  created_at timestamptz not null default now()
);
comment on table public.mechanics is
  'Users who may take sessions. Only active mechanics see the queue or can be asked for by name.';

create table public.intakes (
  id uuid primary key default gen_random_uuid(),
  customer_user_id uuid not null references auth.users (id) on delete cascade,
  plan text not null references public.plans (code),
  concern text check (char_length(concern) <= 4000),
  vehicle_make text check (char_length(vehicle_make) <= 100),
  vehicle_model text check (char_length(vehicle_model) <= 100),
  vehicle_year integer check (vehicle_year between 1900 and 2100),
  vehicle_vin text check (vehicle_vin ~ '^[A-HJ-NPR-Z0-9]{17}$'),
  urgent boolean not null default false,
  is_specialist boolean not null default false,
  preferred_mechanic_id uuid references public.mechanics (user_id) on delete set null,
  routing_type text not null default 'broadcast'
    check (routing_type in ('broadcast', 'workshop_only', 'hybrid', 'priority_broadcast')),
  waiver_signed_at timestamptz,
  created_at timestamptz not null default now()
);
create index intakes_customer_user_id_idx on public.intakes (customer_user_id);
create index intakes_plan_idx on public.intakes (plan);
create index intakes_preferred_mechanic_id_idx on public.intakes (preferred_mechanic_id);
comment on table public.intakes is
  'What the customer asked for, before any session exists. A paid intake waits here for Stripe.';

create table public.sessions (
  id uuid primary key default gen_random_uuid(),
  customer_user_id uuid not null references auth.users (id) on delete cascade,
  type text not null check (type in ('chat', 'video', 'diagnostic')),
  status text not null default 'pending'
    check (status in ('pending', 'waiting', 'live', 'completed', 'cancelled', 'expired')),
  -- The one definition of "active": the unique index below and create_session_record use it.
  is_active boolean generated always as (status in ('pending', 'waiting', 'live')) stored,
  plan text not null references public.plans (code),
  intake_id uuid not null references public.intakes (id),
  stripe_session_id text unique check (char_length(stripe_session_id) between 1 and 255),
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create unique index sessions_one_active_per_customer
  on public.sessions (customer_user_id) where is_active;
create index sessions_customer_user_id_idx on public.sessions (customer_user_id);
create unique index sessions_intake_id_key on public.sessions (intake_id);
create index sessions_plan_idx on public.sessions (plan);
comment on table public.sessions is
  'Consultations. Written only by create_session_record; at most one active per customer.';
comment on index public.sessions_one_active_per_customer is
  'The backstop for the advisory lock in create_session_record: two active sessions cannot exist.';

create table public.session_participants (
  session_id uuid not null references public.sessions (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null check (role in ('customer', 'mechanic', 'observer')),
  joined_at timestamptz not null default now(),
  primary key (session_id, user_id)
);
create index session_participants_user_id_idx on public.session_participants (user_id);
comment on table public.session_participants is
  'Who is in a session. The customer joins at creation; mechanics join when they accept.';

create table public.session_assignments (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references public.sessions (id) on delete cascade,
  mechanic_id uuid references public.mechanics (user_id) on delete set null,
  status text not null default 'queued'
    check (status in ('queued', 'offered', 'accepted', 'declined', 'expired', 'cancelled')),
  -- Copied from the session so that mechanics can read the queue without reading sessions.
  session_type text not null check (session_type in ('chat', 'video', 'diagnostic')),
  plan text not null references public.plans (code),
  urgent boolean not null default false,
  offered_at timestamptz not null default now(),
  accepted_at timestamptz,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now()
);
create index session_assignments_session_id_idx on public.session_assignments (session_id);
create index session_assignments_mechanic_id_idx on public.session_assignments (mechanic_id);
create index session_assignments_plan_idx on public.session_assignments (plan);
create index session_assignments_queue_idx
  on public.session_assignments (urgent desc, offered_at desc) where status = 'queued';
comment on table public.session_assignments is
  'Offers of a session to mechanics. A new session starts with one queued assignment.';

create table public.session_events (
  id bigint generated always as identity primary key,
  session_id uuid not null references public.sessions (id) on delete cascade,
  event_type text not null
    check (event_type in ('created', 'assigned', 'started', 'ended', 'cancelled', 'refunded')),
  user_id uuid references auth.users (id) on delete set null,
  metadata jsonb not null default '{}' check (jsonb_typeof(metadata) = 'object'),
  created_at timestamptz not null default now()
);
create index session_events_session_id_idx on public.session_events (session_id);
create index session_events_user_id_idx on public.session_events (user_id);
comment on table public.session_events is
  'Append-only history of each session, for audit and support.';

create table public.credit_entries (
  id bigint generated always as identity primary key,
  customer_user_id uuid not null references auth.users (id) on delete cascade,
  delta integer not null check (delta <> 0),
  reason text not null check (reason in ('purchase', 'grant', 'session', 'refund')),
  session_id uuid references public.sessions (id) on delete set null,
  created_at timestamptz not null default now(),
  constraint credit_entries_session_debits check ((reason = 'session') = (delta < 0))
);
create index credit_entries_customer_user_id_idx on public.credit_entries (customer_user_id);
create unique index credit_entries_one_debit_per_session
  on public.credit_entries (session_id) where reason = 'session';
comment on table public.credit_entries is
  'Credits ledger: a balance is the sum of a customer''s entries. Debits are taken under the '
  'per-customer lock of create_session_record, so the sum cannot be spent twice.';

create view public.credit_balances with (security_invoker = true) as
  select customer_user_id, sum(delta)::integer as balance
  from public.credit_entries
  group by customer_user_id;
comment on view public.credit_balances is
  'Balances derived from the ledger; security_invoker so RLS on credit_entries applies.';

create view public.mechanic_queue with (security_invoker = true) as
  select
    a.id as assignment_id,
    a.session_id,
    a.session_type,
    a.plan,
    a.urgent,
    a.offered_at,
    now() - a.offered_at as age,
    a.metadata ->> 'preferred_mechanic_id' as preferred_mechanic_id
  from public.session_assignments a
  where a.status = 'queued'
  order by a.urgent desc, a.offered_at desc;
comment on view public.mechanic_queue is
  'Queued sessions, newest urgent first. security_invoker: RLS shows it to active mechanics only.';

-- Row level security: customers read their own rows, mechanics read the queue, anon sees only
-- the catalog; writes to sessions and everything under them go through service_role only.
alter table public.plans enable row level security;
alter table public.mechanics enable row level security;
alter table public.intakes enable row level security;
alter table public.sessions enable row level security;
alter table public.session_participants enable row level security;
alter table public.session_assignments enable row level security;
alter table public.session_events enable row level security;
alter table public.credit_entries enable row level security;

revoke all on table
  public.plans, public.mechanics, public.intakes, public.sessions, public.session_participants,
  public.session_assignments, public.session_events, public.credit_entries,
  public.credit_balances, public.mechanic_queue
  from anon, authenticated;
grant select on table public.plans to anon, authenticated;
grant select on table
  public.mechanics, public.intakes, public.sessions, public.session_participants,
  public.session_assignments, public.session_events, public.credit_entries,
  public.credit_balances, public.mechanic_queue
  to authenticated;
grant insert (
  customer_user_id, plan, concern, vehicle_make, vehicle_model, vehicle_year, vehicle_vin,
  urgent, is_specialist, preferred_mechanic_id, routing_type
) on table public.intakes to authenticated;

create policy "everyone reads active plans" on public.plans
  for select to anon, authenticated
  using (active);

create policy "mechanics read own profile" on public.mechanics
  for select to authenticated
  using (user_id = (select auth.uid()));

create policy "customers read own intakes" on public.intakes
  for select to authenticated
  using (customer_user_id = (select auth.uid()));

create policy "customers create own intakes" on public.intakes
  for insert to authenticated
  with check (customer_user_id = (select auth.uid()));

create policy "customers read own sessions" on public.sessions
  for select to authenticated
  using (customer_user_id = (select auth.uid()));

create policy "participants read own participation" on public.session_participants
  for select to authenticated
  using (user_id = (select auth.uid()));

create policy "active mechanics read queued assignments" on public.session_assignments
  for select to authenticated
  using (
    status = 'queued'
    and exists (
      select 1 from public.mechanics m
      where m.user_id = (select auth.uid()) and m.active
    )
  );

create policy "customers read events of own sessions" on public.session_events
  for select to authenticated
  using (
    exists (
      select 1 from public.sessions s
      where s.id = session_id and s.customer_user_id = (select auth.uid())
    )
  );

create policy "customers read own credit entries" on public.credit_entries
  for select to authenticated
  using (customer_user_id = (select auth.uid()));
