create or replace function public.refund_payment(payment_id uuid, reason text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_checkout text;
begin
  if payment_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'payment_id is required');
  end if;
  select p.checkout_session_id into v_checkout from public.payments p where p.id = refund_payment.payment_id;
  if not found or v_checkout is null then
    perform private.raise_api_error(404, 'PAYMENT_NOT_FOUND', 'no such payment');
  end if;
  return public.enqueue_stripe_request('refund', v_checkout, coalesce(reason, 'asked by an operator'));
end;
$$;
comment on function public.refund_payment(uuid, text) is
  'An operator''s full refund of a payment by its id (pysvc payments refund): what the audit '
  'suggests for refund_failed or a paid payment that bought nothing. Same rules as '
  'enqueue_stripe_request(''refund'', …). service_role only.';
