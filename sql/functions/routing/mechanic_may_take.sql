create or replace function private.mechanic_may_take(
  m public.mechanics, s public.sessions, a public.session_assignments, as_of timestamptz
) returns boolean
language sql
immutable
set search_path = ''
as $$
  select coalesce((m).active
    and (m).user_id <> (s).customer_user_id
    and (
      (m).user_id = r.preferred
      or (
        (not r.specialist or (m).is_specialist)
        and case r.routing
          when 'workshop_only' then r.preferred is null
          when 'priority_broadcast' then r.preferred is null or as_of >= (a).offered_at + interval '5 minutes'
          when 'hybrid' then (m).is_specialist
          else true
        end
      )
    ), false)
  from (
    select
      ((a).metadata ->> 'preferred_mechanic_id')::uuid as preferred,
      coalesce(((s).metadata ->> 'is_specialist')::boolean, false) as specialist,
      coalesce((s).metadata ->> 'routing_type', 'broadcast') as routing
  ) r;
$$;

comment on function private.mechanic_may_take(
  public.mechanics, public.sessions, public.session_assignments, timestamptz
) is
  'The routing rules, defined once (accept_assignment and mechanic_queue_for both ask here). '
  'Only active mechanics, never the customer themself. The preferred mechanic (the assignment''s '
  'metadata.preferred_mechanic_id) may always take the session. Anyone else: an is_specialist '
  'session needs a specialist, and by routing_type: broadcast, any mechanic; workshop_only, '
  'nobody but the preferred one; priority_broadcast, the preferred one alone for 5 minutes after '
  'offered_at, then anyone; hybrid, any specialist. Without a preferred mechanic, workshop_only and '
  'priority_broadcast act as broadcast and hybrid as specialists-only. A workshop_only session '
  'whose preferred mechanic is inactive is taken by nobody and expires (and is refunded).';
