create or replace function private.stripe_retry_delay(attempts integer) returns interval
language sql
immutable
set search_path = ''
as $$
  select least(interval '30 seconds' * pg_catalog.power(2, greatest(attempts - 1, 0)),
                          interval '1 hour');
$$;
comment on function private.stripe_retry_delay(integer) is
  'The one back-off policy for Stripe requests that failed transiently: 30 s, 1 min, 2 min, ... at '
  'most 1 hour, by attempts so far. finish_stripe_request applies it; the worker never picks its own.';
