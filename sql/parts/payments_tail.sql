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
revoke all on function public.record_stripe_refund(text, text, integer, text, text, uuid)
  from public, anon, authenticated;
grant execute on function public.record_stripe_refund(text, text, integer, text, text, uuid) to service_role;
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
