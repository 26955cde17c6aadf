create or replace function public.cancel_session(session_id uuid, customer_id uuid, reason text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
begin
  if cancel_session.customer_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'customer_id is required');
  end if;
  v_session := private.lock_session(cancel_session.session_id, cancel_session.customer_id);
  if v_session.status = 'cancelled' then
    return private.session_state(v_session.id, false);
  end if;
  if v_session.status not in ('pending', 'waiting') then
    perform private.raise_api_error(409, 'SESSION_NOT_CANCELLABLE',
      pg_catalog.format('a %s session cannot be cancelled', v_session.status),
      pg_catalog.jsonb_build_object('status', v_session.status));
  end if;
  perform private.end_unstarted_session(v_session, 'cancelled', cancel_session.customer_id,
    pg_catalog.jsonb_build_object('reason', pg_catalog.left(cancel_session.reason, 500)));
  return private.session_state(v_session.id, true);
end;
$$;

comment on function public.cancel_session(uuid, uuid, text) is
  'The customer cancels their own pending or waiting session (another customer''s is 404; live or '
  'ended is 409 SESSION_NOT_CANCELLABLE): cancelled with its open offers, a cancelled event, and the '
  'refund in the same transaction (stripe_outbox or credits, with a refunded event). Cancelling '
  'again answers changed false and refunds nothing more. service_role only.';
