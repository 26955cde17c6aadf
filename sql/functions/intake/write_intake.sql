create or replace function private.write_intake(
  customer_id uuid,
  intake_id uuid,
  plan text,
  intake jsonb,
  urgent boolean,
  is_specialist boolean,
  preferred_mechanic_id uuid,
  routing_type text
) returns void
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from auth.users u where u.id = write_intake.customer_id) then
    perform private.raise_api_error(403, 'UNKNOWN_USER', 'this token''s user does not exist');
  end if;
  if intake is not null and pg_catalog.jsonb_typeof(intake) <> 'object' then
    perform private.raise_api_error(422, 'INVALID_INTAKE', 'intake must be a JSON object');
  end if;
  begin
    insert into public.intakes (
      id, customer_user_id, plan, concern, vehicle_make, vehicle_model, vehicle_year, vehicle_vin,
      urgent, is_specialist, preferred_mechanic_id, routing_type
    ) values (
      intake_id, customer_id, plan, intake ->> 'concern', intake ->> 'vehicle_make',
      intake ->> 'vehicle_model', (intake ->> 'vehicle_year')::integer, intake ->> 'vehicle_vin',
      coalesce(urgent, false), coalesce(is_specialist, false), preferred_mechanic_id,
      coalesce(routing_type, 'broadcast')
    );
  exception
    when unique_violation then
      perform private.raise_api_error(409, 'INTAKE_ALREADY_USED', 'this intake id is taken');
    when check_violation or invalid_text_representation or numeric_value_out_of_range then
      perform private.raise_api_error(422, 'INVALID_INTAKE',
        pg_catalog.format('the intake was refused: %s', sqlerrm));
  end;
end;
$$;

comment on function private.write_intake(uuid, uuid, text, jsonb, boolean, boolean, uuid, text) is
  'Stores an intake for a customer who exists, turning the table''s CHECKs into 422 INVALID_INTAKE. '
  'Only called inside create_session_record and submit_intake, under the customer''s lock.';
