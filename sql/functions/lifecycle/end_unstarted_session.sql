create or replace function private.end_unstarted_session(
  session public.sessions, status text, user_id uuid, metadata jsonb
) returns void
language plpgsql
set search_path = ''
as $$
begin
  update public.session_assignments a
  set status = end_unstarted_session.status
  where a.session_id = (end_unstarted_session.session).id and a.status in ('queued', 'offered');
  perform private.move_session(end_unstarted_session.session, end_unstarted_session.status,
    end_unstarted_session.status, end_unstarted_session.user_id, end_unstarted_session.metadata);
  perform private.refund_session(end_unstarted_session.session, end_unstarted_session.user_id,
    end_unstarted_session.status);
end;
$$;

comment on function private.end_unstarted_session(public.sessions, text, uuid, jsonb) is
  'Cancel and expiry in one place: status cancelled or expired for the session, its open offers '
  'and its event, then the refund. An accepted assignment stays accepted: it records who had '
  'taken the session, whose status says how it ended.';
