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
