#!/usr/bin/env bash
# Assemble the payments migration from its parts and the function sources (scratch tool).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=sql/migrations/20261201300000_payments_one_record_per_checkout.sql
{
  cat sql/parts/payments_tables.sql
  for f in payments/check_payment_transition payments/lock_payment stripe/stripe_retry_delay \
           payments/enqueue_expire_checkout payments/request_refund payments/settle_payment \
           payments/record_stripe_refund sessions/write_session payments/consume_payment \
           payments/open_checkout payments/record_checkout_opened payments/record_checkout_status \
           lifecycle/refund_session stripe/lock_paid_session stripe/claim_stripe_request \
           stripe/finish_stripe_request; do
    echo; cat "sql/functions/$f.sql"
  done
  echo; sed -n '/^create or replace function/,$p' sql/create_session_record.sql
  for f in stripe/enqueue_stripe_request payments/payment_audit payments/refund_payment ops/ops_stats; do
    echo; cat "sql/functions/$f.sql"
  done
  echo; cat sql/parts/payments_tail.sql
} > "$out"
echo "$out"
