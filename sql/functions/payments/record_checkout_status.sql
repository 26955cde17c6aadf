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
