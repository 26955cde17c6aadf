create or replace function public.mechanic_queue_for(mechanic_id uuid, max_items integer default 100)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_mechanic public.mechanics%rowtype;
  v_queue jsonb;
begin
  v_mechanic := private.require_active_mechanic(mechanic_queue_for.mechanic_id);
  if max_items is null or max_items not between 1 and 1000 then
    perform private.raise_api_error(422, 'INVALID_ARGUMENT', 'max_items must be between 1 and 1000');
  end if;
  select coalesce(pg_catalog.jsonb_agg(q.item order by q.urgent desc, q.offered_at desc), '[]'::jsonb)
  into v_queue
  from (
    select a.urgent, a.offered_at, pg_catalog.jsonb_build_object(
      'assignment_id', a.id,
      'session_id', a.session_id,
      'session_type', a.session_type,
      'plan', a.plan,
      'urgent', a.urgent,
      'offered_at', a.offered_at,
      'routing_type', a.routing_type,
      'preferred', coalesce(a.preferred_mechanic_id = v_mechanic.user_id, false)
    ) as item
    from public.session_assignments a
    join public.sessions s on s.id = a.session_id
    where a.status = 'queued'
      and s.status = 'pending'
      and private.mechanic_may_take(v_mechanic, s, a, pg_catalog.now())
    order by a.urgent desc, a.offered_at desc
    limit max_items
  ) q;
  return v_queue;
end;
$$;
comment on function public.mechanic_queue_for(uuid, integer) is
  'The queued sessions this mechanic may accept (private.mechanic_may_take on the offer''s typed '
  'routing columns, as accept_assignment and the session_assignments read policy), urgent first, '
  'newest first, at most max_items. service_role only.';
