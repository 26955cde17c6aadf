"""Routes by audience: customers, Stripe, operators (health)."""
