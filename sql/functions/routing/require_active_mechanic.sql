create or replace function private.require_active_mechanic(mechanic_id uuid) returns public.mechanics
language plpgsql
stable
set search_path = ''
as $$
declare
  v_mechanic public.mechanics%rowtype;
begin
  if require_active_mechanic.mechanic_id is null then
    perform private.raise_api_error(422, 'MISSING_FIELD', 'mechanic_id is required');
  end if;
  select m.* into v_mechanic from public.mechanics m where m.user_id = require_active_mechanic.mechanic_id;
  if not found then
    perform private.raise_api_error(403, 'NOT_A_MECHANIC', 'this user is not a mechanic');
  end if;
  if not v_mechanic.active then
    perform private.raise_api_error(403, 'MECHANIC_INACTIVE', 'this mechanic is not active');
  end if;
  return v_mechanic;
end;
$$;

comment on function private.require_active_mechanic(uuid) is
  'The mechanic row, or 403 NOT_A_MECHANIC / MECHANIC_INACTIVE.';
