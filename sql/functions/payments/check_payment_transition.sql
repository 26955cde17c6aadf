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
