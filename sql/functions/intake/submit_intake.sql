create or replace function public.submit_intake(
  customer_id uuid,
  intake_id uuid,
  plan text,
  intake jsonb default null,
  urgent boolean default false,
  is_specialist boolean default false,
  preferred_mechanic_id uuid default null,
  routing_type text default 'broadcast'
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_plan public.plans%rowtype;
  v_intake public.intakes%rowtype;
  v_active public.sessions%rowtype;
begin
  if customer_id is null or intake_id is null or plan is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'customer_id, intake_id and plan are required');
  end if;
  if coalesce(routing_type, 'broadcast') not in ('broadcast', 'workshop_only', 'hybrid', 'priority_broadcast') then
    perform private.raise_api_error(422, 'INVALID_ROUTING_TYPE',
      'routing_type must be broadcast, workshop_only, hybrid or priority_broadcast');
  end if;
  select p.* into v_plan from public.plans p where p.code = submit_intake.plan and p.active;
  if not found then
    perform private.raise_api_error(404, 'UNKNOWN_PLAN',
      pg_catalog.format('plan %L is not offered', pg_catalog.left(submit_intake.plan, 40)));
  end if;
  if preferred_mechanic_id is not null and not exists (
    select 1 from public.mechanics m where m.user_id = submit_intake.preferred_mechanic_id and m.active
  ) then
    perform private.raise_api_error(404, 'MECHANIC_NOT_FOUND',
      'the preferred mechanic does not exist or is not active');
  end if;

  -- The same per-customer lock as create_session_record: never send a customer to pay while a
  -- session is active.
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended('create_session_record:' || customer_id::text, 0)
  );

  select i.* into v_intake
  from public.intakes i
  where i.id = submit_intake.intake_id and i.customer_user_id = customer_id;
  if found then  -- a retry of the same request
    return pg_catalog.jsonb_build_object('intake_id', v_intake.id, 'plan', v_intake.plan, 'created', false);
  end if;

  select s.* into v_active
  from public.sessions s
  where s.customer_user_id = customer_id and s.is_active;
  if found then
    perform private.raise_api_error(409, 'ACTIVE_SESSION_EXISTS',
      'You already have an active session',
      pg_catalog.jsonb_build_object(
        'activeSessionId', v_active.id,
        'activeSessionType', v_active.type,
        'activeSessionStatus', v_active.status
      ));
  end if;

  perform private.write_intake(customer_id, intake_id, v_plan.code, intake,
    urgent, is_specialist, preferred_mechanic_id, routing_type);
  return pg_catalog.jsonb_build_object('intake_id', intake_id, 'plan', v_plan.code, 'created', true);
end;
$$;

comment on function public.submit_intake(uuid, uuid, text, jsonb, boolean, boolean, uuid, text) is
  'Stores an intake (any plan) unless the customer has an active session (409 naming it), under '
  'create_session_record''s per-customer lock, in one transaction; a retry with the same intake id '
  'answers the stored intake. The paid path''s first step: the session itself waits for Stripe. '
  'service_role only.';
