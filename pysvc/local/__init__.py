"""The local development stack: embedded PostgreSQL, the Supabase-compat bootstrap, PostgREST 12
and demo users. Installed with the `local` extra; `pysvc serve` never imports it."""
