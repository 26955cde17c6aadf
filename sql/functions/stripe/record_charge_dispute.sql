create or replace function public.record_charge_dispute(
  payment_intent text,
  dispute_id text,
  reason text default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_session public.sessions%rowtype;
begin
  if payment_intent is null or dispute_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'payment_intent and dispute_id are required');
  end if;
  v_session := private.lock_paid_session(payment_intent);
  if v_session.id is null then
    return pg_catalog.jsonb_build_object('session_id', null);
  end if;
  if not exists (select 1 from public.session_events e
                 where e.session_id = v_session.id and e.event_type = 'disputed'
                   and e.metadata ->> 'dispute_id' = dispute_id) then
    update public.sessions s
    set metadata = s.metadata || pg_catalog.jsonb_build_object('disputed', true), updated_at = pg_catalog.now()
    where s.id = v_session.id;
    perform private.log_event(v_session.id, 'disputed', null, pg_catalog.jsonb_build_object(
      'dispute_id', dispute_id, 'reason', pg_catalog.left(reason, 200)));
  end if;
  return pg_catalog.jsonb_build_object('session_id', v_session.id, 'disputed', true);
end;
$$;

comment on function public.record_charge_dispute(text, text, text) is
  'A dispute Stripe reports (charge.dispute.created): the session is flagged disputed and the '
  'dispute logged once per dispute id, for support to act on; nothing else changes.';
