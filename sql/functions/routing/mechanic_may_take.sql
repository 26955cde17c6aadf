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
      (m).user_id = (a).preferred_mechanic_id
      or (
        (not (s).is_specialist or (m).is_specialist)
        and case (a).routing_type
          when 'workshop_only' then (a).preferred_mechanic_id is null
          when 'priority_broadcast' then
            (a).preferred_mechanic_id is null or as_of >= (a).offered_at + interval '5 minutes'
          when 'hybrid' then (m).is_specialist
          else true
        end
      )
    ), false);
$$;
comment on function private.mechanic_may_take(
  public.mechanics, public.sessions, public.session_assignments, timestamptz
) is
  'The routing rules, defined once: accept_assignment, mechanic_queue_for and the read policy on '
  'session_assignments (private.in_my_queue) all ask here. Only active mechanics, never the customer '
  'themself. The offer''s preferred_mechanic_id may always take it. Anyone else: a session with '
  'is_specialist needs a specialist, and by the offer''s routing_type: broadcast, any mechanic; '
  'workshop_only, nobody but the preferred one; priority_broadcast, the preferred one alone for 5 '
  'minutes after offered_at, then anyone; hybrid, any specialist. Without a preferred mechanic, '
  'workshop_only and priority_broadcast act as broadcast and hybrid as specialists-only. Never null.';
