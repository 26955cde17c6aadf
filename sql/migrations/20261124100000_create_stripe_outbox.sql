-- The Stripe outbox: SQL cannot call Stripe, and a refund must never be lost or doubled. What the
-- database decides (a refund on cancel or expiry, a paid-but-conflicted checkout, later expiring an
-- open Checkout Session) is written here in the deciding transaction; a worker in the service
-- claims rows, calls Stripe with the row's idempotency key and records the outcome.

create table public.stripe_outbox (
  id bigint generated always as identity primary key,
  kind text not null check (kind in ('refund', 'expire_checkout')),
  checkout_session_id text not null
    check (checkout_session_id ~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$'),
  -- One request per kind and Checkout Session, whoever asks: the key Stripe deduplicates on is
  -- derived from the row, so it cannot disagree with the webhook path ('refund-' || cs_...).
  idempotency_key text generated always as (
    case kind when 'refund' then 'refund-' else 'expire-checkout-' end || checkout_session_id
  ) stored not null unique,
  session_id uuid references public.sessions (id) on delete set null,
  payment_intent text check (char_length(payment_intent) between 1 and 255),
  amount integer check (amount > 0),
  reason text check (char_length(reason) <= 500),
  status text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
  attempts integer not null default 0 check (attempts >= 0),
  last_error text check (char_length(last_error) <= 2000),
  next_attempt_at timestamptz not null default now(),
  locked_until timestamptz,
  stripe_object_id text check (char_length(stripe_object_id) <= 255),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  sent_at timestamptz,
  constraint stripe_outbox_sent_has_time check ((status = 'sent') = (sent_at is not null))
);
create index stripe_outbox_session_id_idx on public.stripe_outbox (session_id);
create index stripe_outbox_due_idx on public.stripe_outbox (next_attempt_at) where status = 'pending';
comment on table public.stripe_outbox is
  'Requests to Stripe decided in SQL (refunds, expiring Checkout Sessions), written in the same '
  'transaction as the decision and sent by the service''s worker. One row per kind and Checkout '
  'Session (idempotency_key), so a checkout is refunded once however often it is asked. '
  'service_role only: RLS on, no policies, nothing granted to anon or authenticated.';
comment on column public.stripe_outbox.amount is 'Cents to refund; null means the whole payment.';
comment on column public.stripe_outbox.payment_intent is
  'Known when the webhook recorded it; otherwise the worker reads it from the Checkout Session.';
comment on column public.stripe_outbox.locked_until is
  'A claiming worker''s lease: until then no other worker claims the row.';
comment on column public.stripe_outbox.stripe_object_id is 'What Stripe created, e.g. the refund id re_...';

alter table public.stripe_outbox enable row level security;
revoke all on table public.stripe_outbox from anon, authenticated;

create or replace function public.enqueue_stripe_request(
  kind text,
  checkout_session_id text,
  payment_intent text default null,
  session_id uuid default null,
  reason text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
  v_created boolean;
begin
  if kind is null or kind not in ('refund', 'expire_checkout') then
    perform private.raise_api_error(422, 'INVALID_KIND', 'kind must be refund or expire_checkout');
  end if;
  if checkout_session_id is null or checkout_session_id !~ '^cs_(test|live)_[A-Za-z0-9]{1,250}$' then
    perform private.raise_api_error(422, 'INVALID_STRIPE_SESSION',
      'checkout_session_id must be a Checkout Session id (cs_...)');
  end if;
  if enqueue_stripe_request.session_id is not null and not exists (
    select 1 from public.sessions s where s.id = enqueue_stripe_request.session_id
  ) then
    perform private.raise_api_error(404, 'SESSION_NOT_FOUND', 'no such session');
  end if;

  -- Concurrent callers with one key queue on the unique index; all but the first do nothing.
  insert into public.stripe_outbox as o (kind, checkout_session_id, payment_intent, session_id, reason)
  values (
    enqueue_stripe_request.kind, enqueue_stripe_request.checkout_session_id,
    pg_catalog.left(enqueue_stripe_request.payment_intent, 255), enqueue_stripe_request.session_id,
    pg_catalog.left(enqueue_stripe_request.reason, 500)
  )
  on conflict (idempotency_key) do nothing
  returning o.* into v_row;
  v_created := found;

  if not v_created then
    -- The first request wins; a later one may only fill in what the first did not know.
    update public.stripe_outbox o set
      payment_intent = coalesce(o.payment_intent, pg_catalog.left(enqueue_stripe_request.payment_intent, 255)),
      session_id = coalesce(o.session_id, enqueue_stripe_request.session_id),
      updated_at = pg_catalog.now()
    where o.kind = enqueue_stripe_request.kind
      and o.checkout_session_id = enqueue_stripe_request.checkout_session_id
    returning o.* into v_row;
  end if;

  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('created', v_created);
end;
$$;

create or replace function public.claim_stripe_requests(
  max_requests integer default 10,
  lease interval default '60 seconds'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_claimed jsonb;
begin
  if max_requests is null or max_requests not between 1 and 1000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_requests must be between 1 and 1000');
  end if;
  if lease is null or lease <= interval '0' or lease > interval '1 hour' then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'lease must be positive and at most 1 hour');
  end if;

  -- skip locked: concurrent claimers pass over each other's rows instead of waiting for them.
  with due as (
    select o.id
    from public.stripe_outbox o
    where o.status = 'pending'
      and o.next_attempt_at <= pg_catalog.now()
      and (o.locked_until is null or o.locked_until <= pg_catalog.now())
    order by o.next_attempt_at, o.id
    limit max_requests
    for update skip locked
  ), claimed as (
    update public.stripe_outbox o set
      locked_until = pg_catalog.now() + lease,
      attempts = o.attempts + 1,
      updated_at = pg_catalog.now()
    from due
    where o.id = due.id
    returning o.*
  )
  select coalesce(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(c) order by c.id), '[]'::jsonb)
  into v_claimed
  from claimed c;
  return v_claimed;
end;
$$;

create or replace function public.finish_stripe_request(
  id bigint,
  outcome text,
  stripe_object_id text default null,
  error text default null,
  retry_in interval default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.stripe_outbox%rowtype;
begin
  if outcome is null or outcome not in ('sent', 'failed', 'retry') then
    perform private.raise_api_error(422, 'INVALID_OUTCOME', 'outcome must be sent, failed or retry');
  end if;
  if retry_in is not null and (retry_in < interval '0' or retry_in > interval '7 days') then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'retry_in must be between 0 and 7 days');
  end if;

  select o.* into v_row from public.stripe_outbox o where o.id = finish_stripe_request.id for update;
  if not found then
    perform private.raise_api_error(404, 'REQUEST_NOT_FOUND', 'no such Stripe request');
  end if;
  if v_row.status <> 'pending' then
    -- A worker whose lease ran out may report what another worker already reported.
    if v_row.status = 'sent' and outcome = 'sent' then
      return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', false);
    end if;
    perform private.raise_api_error(409, 'REQUEST_ALREADY_FINISHED',
      pg_catalog.format('this request is already %s', v_row.status),
      pg_catalog.jsonb_build_object('status', v_row.status));
  end if;

  update public.stripe_outbox o set
    status = case outcome when 'retry' then 'pending' else outcome end,
    sent_at = case when outcome = 'sent' then pg_catalog.now() end,
    stripe_object_id = coalesce(pg_catalog.left(finish_stripe_request.stripe_object_id, 255), o.stripe_object_id),
    last_error = case when outcome = 'sent' then o.last_error else pg_catalog.left(error, 2000) end,
    -- Back-off when the worker does not say: 30 s, 1 min, 2 min, ... at most 1 hour.
    next_attempt_at = case when outcome = 'retry' then pg_catalog.now() + coalesce(
      retry_in,
      least(interval '30 seconds' * pg_catalog.power(2, greatest(o.attempts - 1, 0)),
                       interval '1 hour')
    ) else o.next_attempt_at end,
    locked_until = null,
    updated_at = pg_catalog.now()
  where o.id = finish_stripe_request.id
  returning o.* into v_row;

  return pg_catalog.to_jsonb(v_row) || pg_catalog.jsonb_build_object('changed', true);
end;
$$;

revoke all on function public.enqueue_stripe_request(text, text, text, uuid, text)
  from public, anon, authenticated;
grant execute on function public.enqueue_stripe_request(text, text, text, uuid, text) to service_role;
revoke all on function public.claim_stripe_requests(integer, interval) from public, anon, authenticated;
grant execute on function public.claim_stripe_requests(integer, interval) to service_role;
revoke all on function public.finish_stripe_request(bigint, text, text, text, interval)
  from public, anon, authenticated;
grant execute on function public.finish_stripe_request(bigint, text, text, text, interval) to service_role;

comment on function public.enqueue_stripe_request(text, text, text, uuid, text) is
  'Asks for a Stripe side effect (refund or expire_checkout of a Checkout Session). Idempotent by '
  'construction: one row per kind and Checkout Session, so concurrent webhook deliveries and '
  'cancels produce one request; returns the row (new or existing) with "created". service_role '
  'only: it decides where money goes.';
comment on function public.claim_stripe_requests(integer, interval) is
  'The worker''s claim: up to max_requests due, unleased pending requests, leased for `lease` and '
  'counted as an attempt. for update skip locked, so concurrent workers never claim the same row '
  'and never wait for each other; a crashed worker''s rows come back when the lease ends. '
  'service_role only.';
comment on function public.finish_stripe_request(bigint, text, text, text, interval) is
  'Records what Stripe answered: sent (with Stripe''s object id), failed (refused; kept with the '
  'reason and never retried) or retry (transient; pending again after retry_in, or an exponential '
  'back-off when null). Reporting sent twice is harmless. service_role only.';
