-- The plans on sale at launch. Free plans are chat only; paid plans can also be bought with credits.
insert into public.plans (code, session_type, price_cents, currency, is_free, credit_cost) values
  ('free', 'chat', 0, 'usd', true, null),
  ('trial', 'chat', 0, 'usd', true, null),
  ('trial-free', 'chat', 0, 'usd', true, null),
  ('quick', 'chat', 999, 'usd', false, 1),
  ('standard', 'video', 2999, 'usd', false, 3),
  ('diagnostic', 'diagnostic', 4999, 'usd', false, 5);
