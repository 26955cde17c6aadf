create or replace function private.requeue_session(
  session public.sessions, assignment public.session_assignments, user_id uuid, reason text
) returns void
language plpgsql
set search_path = ''
as $$
declare
  v_fresh uuid;
begin
  update public.session_assignments a
  set status = 'cancelled',
      metadata = a.metadata || pg_catalog.jsonb_build_object(
        'released_at', pg_catalog.now(), 'reason', requeue_session.reason)
  where a.id = (requeue_session.assignment).id;
  -- A fresh offer: offered_at is now, so the expiry clock (and a priority window) starts again.
  insert into public.session_assignments
    (session_id, status, session_type, plan, urgent, routing_type, preferred_mechanic_id, offered_at)
  values ((requeue_session.session).id, 'queued', (requeue_session.assignment).session_type,
          (requeue_session.assignment).plan, (requeue_session.assignment).urgent,
          (requeue_session.assignment).routing_type, (requeue_session.assignment).preferred_mechanic_id,
          pg_catalog.now())
  returning id into v_fresh;
  delete from public.session_participants p
  where p.session_id = (requeue_session.session).id
    and p.user_id = (requeue_session.assignment).mechanic_id and p.role = 'mechanic';
  perform private.move_session(requeue_session.session, 'pending', 'released', requeue_session.user_id,
    pg_catalog.jsonb_build_object(
      'assignment_id', (requeue_session.assignment).id, 'new_assignment_id', v_fresh,
      'mechanic_id', (requeue_session.assignment).mechanic_id, 'reason', requeue_session.reason));
end;
$$;
comment on function private.requeue_session(public.sessions, public.session_assignments, uuid, text) is
  'A waiting session back to the queue, for release_session (reason released) and the sweep''s '
  'no-show (reason no_show): the accepted assignment is cancelled (metadata.released_at, reason), a '
  'fresh queued one with the same routing is offered from now (the expiry clock restarts), the '
  'mechanic leaves session_participants and a released event keeps who it was and why. Nothing is '
  'refunded: the session goes on. The caller holds the customer''s lock.';
