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
