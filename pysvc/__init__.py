"""pysvc: atomic, idempotent session creation on Supabase, from intake and Stripe webhooks."""

__version__ = "0.1.0"
